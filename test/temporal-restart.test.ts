// The Temporal dev server started by our scripts persists to SQLite: a workflow started before a server
// restart keeps its history and completes after it. Uses a private server on its own ports and data.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { servicesConfig, servicesDown, servicesUp, type ServicesConfig } from '../scripts/services/dev-services.js';
import { finishSignal, smokeWorkflow } from './fixtures/workflows/smoke.js';
import { withFreshPorts } from './net.js';
import { trainingDeadlineMs, waitFor } from './training-harness.js';

let cfg: ServicesConfig;
let dataDir: string;
const log = (line: string): void => console.log(`[private temporal] ${line}`);

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'dro-temporal-restart-'));
  cfg = await withFreshPorts(async (ports) => {
    const fresh = servicesConfig({ ...process.env, ...ports, DRO_DATA_DIR: dataDir });
    await servicesUp(fresh, ['temporal'], log);
    return fresh;
  });
});

afterAll(async () => {
  if (cfg) await servicesDown(cfg, ['temporal'], log);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const address = (): string => `127.0.0.1:${cfg.temporal.port}`;

async function withWorker<T>(taskQueue: string, fn: () => Promise<T>): Promise<T> {
  const connection = await NativeConnection.connect({ address: address() });
  try {
    const worker = await Worker.create({
      connection,
      taskQueue,
      workflowsPath: join(import.meta.dirname, 'fixtures', 'workflows', 'smoke.ts'),
    });
    return await worker.runUntil(fn);
  } finally {
    await connection.close();
  }
}

async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address: address() });
  try {
    return await fn(new Client({ connection }));
  } finally {
    await connection.close();
  }
}

async function historyOf(client: Client, workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).map((e) => `${String(e.eventId)}:${temporal.api.enums.v1.EventType[e.eventType ?? 0]}`);
}

it('keeps a started workflow history across a server restart, and the workflow completes afterwards', async () => {
  const taskQueue = 'smoke-restart';
  const workflowId = `smoke-${Date.now()}`;
  const before = await withWorker(taskQueue, () =>
    withClient(async (client) => {
      const handle = await client.workflow.start(smokeWorkflow, { taskQueue, workflowId, args: ['smoke'] });
      // Wait until the timer has fired and the workflow is parked on its condition: two workflow tasks
      // on a fresh server, no activity; a start's bound.
      return waitFor(
        'the workflow to reach its wait',
        async () => {
          const events = await historyOf(client, handle.workflowId);
          return events.filter((e) => e.endsWith('WORKFLOW_TASK_COMPLETED')).length >= 2 ? events : undefined;
        },
        trainingDeadlineMs(0),
        { everyMs: 100 },
      );
    }),
  );
  expect(before.some((e) => e.endsWith('TIMER_FIRED'))).toBe(true);

  await servicesDown(cfg, ['temporal'], log);
  await servicesUp(cfg, ['temporal'], log);

  await withClient(async (client) => {
    const description = await client.workflow.getHandle(workflowId).describe();
    expect(description.status.name).toBe('RUNNING');
    expect((await historyOf(client, workflowId)).slice(0, before.length)).toEqual(before);
  });
  const result = await withWorker(taskQueue, () =>
    withClient(async (client) => {
      const handle = client.workflow.getHandle<typeof smokeWorkflow>(workflowId);
      await handle.signal(finishSignal, 'after-restart');
      return handle.result();
    }),
  );
  expect(result).toBe('smoke:after-restart');
});
