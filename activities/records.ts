// The run's store records in one place: the key layout of everything a run writes besides its checkpoint
// files, and the JSON every record is stored as. Keys are deterministic, so a retried or replayed
// activity writes the same key with the same content.
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.js';

const pad = (n: number): string => String(n).padStart(8, '0');

export const runKeys = {
  stepDir: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/`,
  rollout: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rollout.json`,
  scores: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/scores.json`,
  rewards: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/rewards.json`,
  update: (runId: string, step: number): string => `${runId}/steps/${pad(step)}/update.json`,
  subset: (runId: string, version: number): string => `${runId}/subsets/${pad(version)}.json`,
  filterRound: (runId: string, round: number): string => `${runId}/filtering/${pad(round)}.json`,
  metrics: (runId: string, step: number): string => `${runId}/metrics/${pad(step)}.json`,
  metricsPrefix: (runId: string): string => `${runId}/metrics/`,
  evaluation: (runId: string, step: number): string => `${runId}/evaluations/${pad(step)}.json`,
  evaluationsPrefix: (runId: string): string => `${runId}/evaluations/`,
  /** Every hyper-parameter change the run accepted, so a resume from an older checkpoint replays them. */
  hyperparameters: (runId: string): string => `${runId}/hyperparameters.json`,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function writeJson(store: BlobStore, key: string, value: unknown, signal?: AbortSignal): Promise<void> {
  await store.put(key, encoder.encode(`${JSON.stringify(value)}\n`), { signal });
}

export async function readJson<T>(store: BlobStore, key: string, signal?: AbortSignal): Promise<T> {
  const bytes = await store.get(key, { signal });
  return JSON.parse(decoder.decode(bytes)) as T;
}

export async function readJsonIfExists<T>(store: BlobStore, key: string, signal?: AbortSignal): Promise<T | undefined> {
  try {
    return await readJson<T>(store, key, signal);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  }
}
