// Fault injection for the fault tests, read by the policy worker from DRO_FAULT: the process SIGKILLs
// itself at a named point of a named step, as a crashed machine would, or an update is fed a NaN.
// Each fault fires once: DRO_FAULT_MARK names a file created just before it fires, so a restarted
// worker with the same environment does not crash again.
import { existsSync, writeFileSync } from 'node:fs';
import type { BlobStore } from '../storage/blob-store.js';
import { MANIFEST_FILE } from '../storage/checkpoints.js';

export type FaultPoint = 'rollout' | 'update' | 'checkpoint-upload' | 'nan-loss';

export interface FaultPlan {
  /** Called at each fault point; kills the process (or returns true for 'nan-loss') when it matches. */
  at(point: FaultPoint, step: number): boolean;
}

export const NO_FAULTS: FaultPlan = { at: () => false };

/** DRO_FAULT=<point>@<step>, e.g. `update@5`; DRO_FAULT_MARK=<file> makes it fire once. */
export function faultsFromEnv(env: NodeJS.ProcessEnv = process.env): FaultPlan {
  const spec = env.DRO_FAULT;
  if (!spec) return NO_FAULTS;
  const match = /^(rollout|update|checkpoint-upload|nan-loss)@(\d+)$/.exec(spec);
  if (!match) throw new Error(`DRO_FAULT must be <rollout|update|checkpoint-upload|nan-loss>@<step>, got ${JSON.stringify(spec)}`);
  const point = match[1] as FaultPoint;
  const step = Number(match[2]);
  const mark = env.DRO_FAULT_MARK;
  return {
    at(p, s) {
      if (p !== point || s !== step) return false;
      if (mark) {
        if (existsSync(mark)) return false;
        writeFileSync(mark, `${spec}\n`);
      }
      if (p === 'nan-loss') return true;
      process.kill(process.pid, 'SIGKILL');
      return false;
    },
  };
}

/**
 * The store as a checkpoint commit of `step` sees it: the 'checkpoint-upload' fault fires when the commit
 * is about to write its manifest, after the data files are up, the most damaging moment to die.
 */
export function withUploadFault(store: BlobStore, plan: FaultPlan, step: number): BlobStore {
  if (plan === NO_FAULTS) return store;
  const manifest = `/checkpoints/${String(step).padStart(8, '0')}/${MANIFEST_FILE}`;
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (prop !== 'put' || typeof value !== 'function') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      return (key: string, ...rest: unknown[]) => {
        if (key.endsWith(manifest)) plan.at('checkpoint-upload', step);
        return (value as (...a: unknown[]) => unknown).call(target, key, ...rest);
      };
    },
  });
}
