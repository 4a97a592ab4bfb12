// How a training run calls its activities: light, retry-safe work as local activities on the control
// worker, pinning on any policy worker, a step's units on the queue every policy worker polls, and the
// run's policy state work on its pinned worker's own queue.
import { proxyActivities, proxyLocalActivities, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { RunConfig } from '../dro/config.js';
import { POLICY_QUEUE, UNITS_QUEUE } from './messages.js';

const LOCAL_OPTIONS = {
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
} as const;

// Light work (the batch, rewards, metrics) as local activities on the control worker that runs the
// workflow: each saves a server round trip (~30 ms on the dev server), a large share of a small
// model's step. The summary names the phase and step in the Web UI's event history.
export const local = (summary: string): Activities => proxyLocalActivities<Activities>({ ...LOCAL_OPTIONS, summary });

/** Pinning waits as long as it takes for some policy worker to exist. */
export const anyPolicyWorker = (summary: string): Activities =>
  proxyActivities<Activities>({
    taskQueue: POLICY_QUEUE,
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1s', maximumInterval: '10s' },
    summary,
  });

/** Work that needs the run's policy state, on the pinned worker's own queue. */
export function pinned(queue: string, config: RunConfig, summary: string, options: Partial<ActivityOptions> = {}): Activities {
  return proxyActivities<Activities>({
    taskQueue: queue,
    // Only a pinned queue may use scheduleToStart: no poller there means the worker is gone.
    scheduleToStartTimeout: config.orchestration.pinnedStartSeconds * 1000,
    heartbeatTimeout: config.orchestration.heartbeatSeconds * 1000,
    // A long rollout on a big model; liveness is the heartbeat's job, not this.
    startToCloseTimeout: '6 hours',
    // Few attempts: retries go to the same queue, and a dead worker is better replaced than waited for.
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 3 },
    summary,
    ...options,
  });
}

/**
 * A unit of a step, on the queue every policy worker polls, one unit at a time each: any worker may take
 * it. A worker killed or hung mid-unit stops heartbeating, and the unit goes back to the queue for another.
 */
export function unitWork(heartbeatSeconds: number, summary: string, taskQueue: string = UNITS_QUEUE): Activities {
  return proxyActivities<Activities>({
    taskQueue,
    heartbeatTimeout: heartbeatSeconds * 1000,
    startToCloseTimeout: '6 hours',
    // Many attempts: each lost worker costs one, and a worker short of memory for the run hands the unit back.
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 20 },
    summary,
  });
}

const PINNED: (keyof Activities)[] = ['loadPolicy', 'warmStart', 'publishPolicyVersion', 'rollout', 'scoreReference', 'update', 'saveCheckpoint', 'filterData'];
/** The activities `pinned` runs: their failures can mean the pinned worker or its state is gone. */
export const PINNED_ACTIVITIES: ReadonlySet<string> = new Set(PINNED);
