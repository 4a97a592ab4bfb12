// What each driver invocation of an experiment leaves in the runs' store: when it started, how long it has
// run, at which commit and on which machine, and which runs it finished. The report reads these, so a
// report regenerated from the records still states the experiment's wall time and provenance.
import { readJson, writeJson } from '../../activities/records.js';
import type { BlobStore } from '../../storage/blob-store.js';
import type { Plan } from './plan.js';

export interface DriverInvocation {
  startedAt: string;
  /** Wall time from the start to the last time this record was written. */
  seconds: number;
  commit: string;
  machine: string;
  /** Runs this invocation brought to completion (started, resumed or followed). */
  finished: string[];
  /** False until the invocation has completed every run: a killed driver leaves its last partial record. */
  complete: boolean;
}

const prefix = (plan: Plan): string => `experiments/${plan.id}/`;

/**
 * The record of one invocation, rewritten as it goes: after every run it finishes and at its end, so a
 * driver killed mid-run loses only the time since its last finished run.
 */
export class InvocationLog {
  private readonly started = performance.now();
  private readonly record: DriverInvocation;
  private readonly key: string;

  constructor(
    private readonly store: BlobStore,
    plan: Plan,
    provenance: { commit: string; machine: string },
    now = new Date(),
  ) {
    this.record = { startedAt: now.toISOString(), seconds: 0, ...provenance, finished: [], complete: false };
    this.key = `${prefix(plan)}driver-${now.toISOString().replace(/[-:.]/g, '')}-${process.pid}.json`;
  }

  async finished(runId: string): Promise<void> {
    this.record.finished.push(runId);
    await this.save();
  }

  async complete(): Promise<void> {
    this.record.complete = true;
    await this.save();
  }

  private async save(): Promise<void> {
    this.record.seconds = (performance.now() - this.started) / 1000;
    await writeJson(this.store, this.key, this.record);
  }
}

/** Every invocation recorded for `plan`, oldest first. */
export async function readInvocations(store: BlobStore, plan: Plan): Promise<DriverInvocation[]> {
  const out: DriverInvocation[] = [];
  for (const { key } of await store.list(prefix(plan))) {
    let parsed: DriverInvocation;
    try {
      parsed = await readJson<DriverInvocation>(store, key);
    } catch (err) {
      throw new Error(`${key} in ${store.location} is not a driver record: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (typeof parsed.seconds !== 'number' || typeof parsed.startedAt !== 'string' || !Array.isArray(parsed.finished)) throw new Error(`${key} in ${store.location} is not a driver record (startedAt, seconds, finished)`);
    out.push(parsed);
  }
  return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}
