// Test harness for training runs against real servers: private Temporal and SeaweedFS instances on
// their own ports and data (so a test may stop, restart or wipe them), worker processes started with
// `dro worker` and killed by their PID, and the digests and metrics that runs are compared by.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../dro/config.js';
import { servicesConfig, servicesDown, servicesUp, type ServiceName, type ServicesConfig } from '../scripts/services/dev-services.js';
import { configHash, runMetrics, type Connected } from '../scripts/cli/runs.js';
import { openBlobStore } from '../storage/open.js';
import { loadCheckpoint } from '../storage/checkpoints.js';
import { freePort } from './net.js';

export { WorkerProcess } from '../scripts/worker-process.js';

export interface PrivateServices {
  cfg: ServicesConfig;
  env: Record<string, string>;
  up(which?: ServiceName[]): Promise<void>;
  down(which?: ServiceName[]): Promise<void>;
  dispose(): Promise<void>;
}

/** Temporal (and SeaweedFS when asked) of this test file alone; their variables are copied into process.env. */
export async function privateServices(label: string, which: ServiceName[]): Promise<PrivateServices> {
  const dataDir = await mkdtemp(join(tmpdir(), `dro-${label}-`));
  const s3Port = await freePort();
  const cfg = servicesConfig({
    ...process.env,
    DRO_DATA_DIR: dataDir,
    DRO_TEMPORAL_PORT: String(await freePort()),
    DRO_TEMPORAL_UI_PORT: String(await freePort()),
    // SeaweedFS takes the three ports after this one and each of the four + 10000.
    DRO_S3_PORT: String(s3Port < 40000 ? s3Port : 20000 + (s3Port % 20000)),
  });
  const log = (line: string): void => console.log(`[${label} services] ${line}`);
  const env = await servicesUp(cfg, which, log);
  Object.assign(process.env, env, { DRO_DATA_DIR: dataDir });
  return {
    cfg,
    env: { ...env, DRO_DATA_DIR: dataDir },
    up: async (w = which) => void (await servicesUp(cfg, w, log)),
    down: (w = which) => servicesDown(cfg, w, log),
    dispose: async () => {
      await servicesDown(cfg, which, log);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function connect(address: string): Promise<Connected> {
  const connection = await Connection.connect({ address });
  return { client: new Client({ connection }), namespace: 'default', close: () => connection.close() };
}

/** A run config; `RunConfig` plus its hash, with every path and store as the test gives them. */
export function testConfig(overrides: RunConfigInput): RunConfig {
  return parseRunConfig(overrides);
}

export { configHash };

/** Polls `check` until it returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface RunDigest {
  /** sha256 of the trained weights: model.safetensors, or a LoRA run's adapter_model.safetensors. */
  model: string;
  optimizer: string;
  /** Per step, every metric except `timing`. */
  metrics: unknown[];
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function runDigest(storeUri: string, runId: string, step: number): Promise<RunDigest> {
  const store = await openBlobStore(storeUri);
  const checkpoint = await loadCheckpoint(store, runId, step);
  const metrics = (await runMetrics(storeUri, runId)).map(({ timing: _timing, ...rest }) => rest);
  const weights = checkpoint.files['model.safetensors'] ?? checkpoint.files['adapter_model.safetensors']!;
  return { model: sha(weights), optimizer: sha(checkpoint.files['optimizer.safetensors']!), metrics };
}
