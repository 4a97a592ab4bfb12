// Fault injection for the fault tests, read by the policy worker from DRO_FAULT: the process SIGKILLs
// itself at a named point of a named step, as a crashed machine would, or an update is fed a NaN.
// With DRO_FAULT_MARK each fault fires once: it names the files created just before they fire, so a
// restarted worker with the same environment does not crash again. Without it a fault fires every time
// its point is reached, in every worker started with it: a crash loop, a step that kills its worker on
// every attempt. Each kill says so on stderr first, so a test can tell which worker died where.
import { existsSync, writeFileSync, writeSync } from 'node:fs';
import type { BlobStore } from '../storage/blob-store.js';
import { isManifestKey } from '../storage/checkpoints.js';

export type FaultPoint = 'rollout' | 'update' | 'checkpoint-upload' | 'nan-loss' | 'hold-upload';

export interface FaultPlan {
  /** Called at each fault point; kills the process (or returns true for 'nan-loss') when it matches. */
  at(point: FaultPoint, step: number): boolean;
  /**
   * 'hold-upload': the checkpoint commit of the step stops before its manifest, announces it (mark file
   * `<mark>.hold-upload@<step>`) and waits for `<mark>.hold-upload@<step>.release`, so a test can take
   * the store away exactly then.
   */
  hold(point: 'hold-upload', step: number): Promise<void>;
}

/** What a worker prints just before a fault kills it, e.g. "fault update@3: SIGKILL". */
export const faultKillLine = (fault: string): string => `fault ${fault}: SIGKILL`;

export const NO_FAULTS: FaultPlan = { at: () => false, hold: () => Promise.resolve() };

/**
 * DRO_FAULT=<point>@<step>[,<point>@<step>...], e.g. `rollout@2,update@7`; with DRO_FAULT_MARK=<prefix>
 * each fault fires once (its mark file is <prefix>.<point>@<step>), without it every time.
 */
export function faultsFromEnv(env: NodeJS.ProcessEnv = process.env): FaultPlan {
  const spec = env.DRO_FAULT;
  if (!spec) return NO_FAULTS;
  const faults = spec.split(',').map((one) => {
    const match = /^(rollout|update|checkpoint-upload|nan-loss|hold-upload)@(\d+)$/.exec(one.trim());
    if (!match) throw new Error(`DRO_FAULT must be <rollout|update|checkpoint-upload|nan-loss|hold-upload>@<step>[,...], got ${JSON.stringify(spec)}`);
    return { point: match[1] as FaultPoint, step: Number(match[2]), name: one.trim() };
  });
  const mark = env.DRO_FAULT_MARK;
  return {
    at(p, s) {
      const f = faults.find((x) => x.point === p && x.step === s);
      if (!f) return false;
      if (mark) {
        const file = `${mark}.${f.name}`;
        if (existsSync(file)) return false;
        writeFileSync(file, `${f.name}\n`);
      }
      if (p === 'nan-loss') return true;
      // Synchronous: the line is in the pipe before the process is gone.
      writeSync(2, `${faultKillLine(f.name)}\n`);
      process.kill(process.pid, 'SIGKILL');
      return false;
    },
    async hold(p, s) {
      const f = faults.find((x) => x.point === p && x.step === s);
      if (!f || !mark) return;
      const file = `${mark}.${f.name}`;
      if (existsSync(file)) return;
      writeFileSync(file, `${f.name}\n`);
      const deadline = Date.now() + 300_000;
      while (!existsSync(`${file}.release`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    },
  };
}

/**
 * The store as a checkpoint commit of `step` sees it: the 'checkpoint-upload' fault fires when the commit
 * is about to write its manifest, after the data files are up, the most damaging moment to die.
 */
export function withUploadFault(store: BlobStore, plan: FaultPlan, step: number): BlobStore {
  if (plan === NO_FAULTS) return store;
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if ((prop !== 'put' && prop !== 'putIfAbsent') || typeof value !== 'function') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      return async (key: string, ...rest: unknown[]) => {
        if (isManifestKey(key, step)) {
          plan.at('checkpoint-upload', step);
          await plan.hold('hold-upload', step);
        }
        return (value as (...a: unknown[]) => unknown).call(target, key, ...rest);
      };
    },
  });
}
