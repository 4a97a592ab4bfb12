// Replays a recorded history of a real training run (through its continue-as-new) against today's
// workflow code: a change that would break running workflows fails here (re-record the fixture with
// scripts/dev/record-history.ts only for an intended, patched() change).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { expect, it } from 'vitest';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'histories', 'training-run.json');
const WORKFLOWS = join(import.meta.dirname, '..', 'workflows', 'index.ts');

async function fixture(): Promise<temporal.api.history.v1.History> {
  return temporal.api.history.v1.History.fromObject(JSON.parse(await readFile(FIXTURE, 'utf8')) as Record<string, unknown>);
}

it('the recorded trainingRun history replays without nondeterminism', async () => {
  const history = await fixture();
  const types = (history.events ?? []).map((e) => e.eventType);
  expect(types.filter((t) => t === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED).length).toBeGreaterThan(10);
  // The light steps (batch, rewards, metrics) are local activities, recorded as markers.
  expect(types.filter((t) => t === temporal.api.enums.v1.EventType.EVENT_TYPE_MARKER_RECORDED).length).toBeGreaterThan(5);
  expect(types.at(-1)).toBe(temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
  // The run's messages and its child evaluation are part of what must replay.
  const E = temporal.api.enums.v1.EventType;
  expect(types).toContain(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED);
  expect(types.filter((t) => t === E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).length).toBe(2);
  expect(types).toContain(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED);
  expect(types).toContain(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
  await Worker.runReplayHistory({ workflowsPath: WORKFLOWS }, history);
});

it('a workflow whose commands differ from the history fails the replay', async () => {
  // The same history with one activity's recorded type changed: replay must notice.
  const history = await fixture();
  const rollout = (history.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType).find((t) => t?.name === 'rollout');
  expect(rollout).toBeDefined();
  rollout!.name = 'somethingElse';
  await expect(Worker.runReplayHistory({ workflowsPath: WORKFLOWS }, history)).rejects.toThrow(/[Nn]ondeterminis/);
});
