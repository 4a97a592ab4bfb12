// Policy versions through the store: after each update (and after a load or the warm start) the trainer
// publishes the trained weights once, named by their sha256 (under LoRA only the adapters, with the
// sha256 of the base they belong to), so that any worker can compute a unit on exactly that version.
// Weights never travel in Temporal payloads; a unit names the version and the worker reads it from here.
import type { RunConfig } from '../dro/config.js';
import type { EngineClient } from '../engine/index.js';
import type { BlobStore } from '../storage/blob-store.js';
import { sha256Hex } from '../storage/checkpoints.js';
import { runKeys } from './records.js';
import type { PublishedPolicy } from './types.js';

/**
 * Publishes the engine's trained weights as version `step` of the run and removes versions the
 * retention keeps no longer. Writing is put-if-absent by content: a retry, a replay after a rewind or a
 * zombie attempt of the same step writes the same key with the same bytes, or nothing.
 */
export async function publishPolicy(store: BlobStore, runId: string, config: RunConfig, step: number, engine: EngineClient, signal?: AbortSignal): Promise<PublishedPolicy> {
  const bytes = await engine.exportParameters();
  const sha256 = sha256Hex(bytes);
  await store.putIfAbsent(runKeys.policy(runId, step, sha256), bytes, { signal });
  const base = config.model.loraRank > 0 ? await engine.baseDigest() : null;
  await retirePolicies(store, runId, step, Math.max(2, config.checkpoint.keepLast), signal);
  return { step, sha256, bytes: bytes.byteLength, base };
}

/**
 * The versions of the `keep` newest steps up to `step` stay (at least the one just published and the one
 * before, which units of the step still in flight may read); newer ones, from before a rewind, stay too:
 * their replay publishes the same keys.
 */
async function retirePolicies(store: BlobStore, runId: string, step: number, keep: number, signal?: AbortSignal): Promise<void> {
  const prefix = runKeys.policiesPrefix(runId);
  const listed = (await store.list(prefix, { signal })).map((b) => ({ key: b.key, step: Number(b.key.slice(prefix.length, prefix.length + 8)) }));
  const steps = [...new Set(listed.map((v) => v.step).filter((s) => Number.isInteger(s) && s <= step))].sort((a, b) => a - b);
  const kept = new Set(steps.slice(-keep));
  for (const v of listed) if (v.step <= step && !kept.has(v.step)) await store.delete(v.key, { signal });
}

/** The bytes of a published version, checked against its name: a worker never computes on other bytes. */
export function fetchPolicy(store: BlobStore, runId: string, policy: PublishedPolicy, signal?: AbortSignal): Promise<Uint8Array> {
  return fetchVerified(store, runKeys.policy(runId, policy.step, policy.sha256), policy.sha256, signal);
}

/** The bytes under `key`, which must have sha256 `sha256`. */
export async function fetchVerified(store: BlobStore, key: string, sha256: string, signal?: AbortSignal): Promise<Uint8Array> {
  const bytes = await store.get(key, { signal });
  const found = sha256Hex(bytes);
  // Retryable (a plain error): the bytes were checked when written, so a mismatch is a store fault that a later read, or another worker, may not meet.
  if (found !== sha256) throw new Error(`${key} in ${store.location} has sha256 ${found.slice(0, 12)}, not the ${sha256.slice(0, 12)} it should have`);
  return bytes;
}
