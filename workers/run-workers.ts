// The worker processes (docs/architecture.md, "Runtime picture"). The control worker runs the workflows and the light activities
// on `dro-control`; a policy worker owns engine threads, polls `dro-policy` for pinning, `dro-evaluation`,
// `dro-units` for any run's units, and a queue of its own for its pinned runs' work. `role: 'all'` runs both in one process for development.
// SIGINT/SIGTERM shut down gracefully: running activities get a grace period, then are cancelled.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, Worker, DefaultLogger, type LogLevel } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { faultsFromEnv } from '../activities/faults.js';
import { PolicyHost, type HostLimits } from '../activities/policy-host.js';
import { CONTROL_QUEUE, EVALUATION_QUEUE, POLICY_QUEUE, UNITS_QUEUE } from '../workflows/messages.js';
import { temporalTarget } from './connection.js';

export type WorkerRole = 'control' | 'policy' | 'all';

export interface RunWorkersOptions {
  role: WorkerRole;
  /** Called once every worker polls, with the policy worker's own queue when there is one. */
  onReady?: (info: { identity: string; policyQueue?: string }) => void;
  logLevel?: LogLevel;
  /**
   * Shut down (as on SIGTERM) once the process that started this one is gone: a script's own worker must
   * not outlive a script killed with SIGKILL, polling a queue that nobody will use and holding its memory.
   */
  exitWithParent?: boolean;
  /** A policy worker's limits (dro worker --memory, --max-runs, --threads); defaults from the machine (activities/policy-host.ts). */
  limits?: Partial<HostLimits>;
}

const WORKFLOWS = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Runs the workers of `role` until SIGINT/SIGTERM, then shuts them down cleanly. */
export async function runWorkers(options: RunWorkersOptions): Promise<void> {
  Runtime.install({ logger: new DefaultLogger(options.logLevel ?? 'WARN') });
  const target = temporalTarget();
  const connection = await NativeConnection.connect(target.connectionOptions);
  const identity = `${options.role}-${process.pid}@${hostname()}`;
  // A queue per process: a restarted worker has lost its engines, so its old queue must not receive work.
  const policyQueue = `${POLICY_QUEUE}-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const host = options.role === 'control' ? undefined : new PolicyHost(policyQueue, options.limits);
  const activities = createActivities({ host, faults: faultsFromEnv(), identity });
  const common = { connection, namespace: target.namespace, identity, activities, shutdownGraceTime: '10s' };
  const workers: Worker[] = [];
  try {
    if (options.role !== 'policy') {
      workers.push(await Worker.create({ ...common, taskQueue: CONTROL_QUEUE, workflowsPath: WORKFLOWS, maxConcurrentActivityTaskExecutions: 8 }));
    }
    if (host) {
      workers.push(await Worker.create({ ...common, taskQueue: POLICY_QUEUE, maxConcurrentActivityTaskExecutions: 2 }));
      // Evaluations queue apart, so a long one never keeps a run from pinning this worker.
      workers.push(await Worker.create({ ...common, taskQueue: EVALUATION_QUEUE, maxConcurrentActivityTaskExecutions: 1 }));
      // One unit at a time: the engine computes one call at a time anyway, and a unit this worker holds is one no other worker can take.
      workers.push(await Worker.create({ ...common, taskQueue: UNITS_QUEUE, maxConcurrentActivityTaskExecutions: 1 }));
      // Pinned work is serialised per run by its workflow; a few slots let several runs share a worker.
      workers.push(await Worker.create({ ...common, taskQueue: policyQueue, maxConcurrentActivityTaskExecutions: 4 }));
    }
    options.onReady?.({ identity, policyQueue: host ? policyQueue : undefined });
    if (options.exitWithParent) watchParent();
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    await host?.shutdown();
    await connection.close();
  }
}

/** Sends this process SIGTERM (the Runtime's graceful shutdown) when its parent ends and it is re-parented. */
function watchParent(): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    console.error(`the process that started this worker (pid ${parent}) is gone; shutting down`);
    process.kill(process.pid, 'SIGTERM');
  }, 1000);
  timer.unref();
}
