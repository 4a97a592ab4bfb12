// The checkpoint protocol (docs/architecture.md, "Checkpoints"): `<runId>/checkpoints/<step, 8 digits>/` holds named files and
// state.json; the manifest, written last, lists every file's sha256 and size. A checkpoint exists only
// when its manifest exists and every file matches it, so a crash mid-commit can never yield a "latest".
// Files are stored by content (`objects/<sha256>`), so two writers of one step never overwrite each
// other's bytes, and the manifest is created exclusively (putIfAbsent): of two concurrent commits with
// different content exactly one wins and the other is refused. A step whose manifest is invalid is
// replaced by a manifest of the next generation (manifest.<n>.json); readers use the newest generation.
import { createHash } from 'node:crypto';
import { BlobNotFoundError, type BlobStore, type OpOptions } from './blob-store.js';

export const CHECKPOINT_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const STATE_FILE = 'state.json';
export const MAX_STEP = 99_999_999;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ManifestEntry {
  sha256: string;
  bytes: number;
  /** Where the bytes are, under the step's prefix: `objects/<sha256>`; absent in older checkpoints (the file's name). */
  object?: string;
}

export interface CheckpointManifest {
  formatVersion: number;
  runId: string;
  step: number;
  createdAt: string;
  files: Record<string, ManifestEntry>;
}

/** A committed checkpoint, small enough to pass between Temporal activities. */
export interface CheckpointRef {
  runId: string;
  step: number;
  prefix: string;
  manifestKey: string;
  files: Record<string, ManifestEntry>;
}

export interface CheckpointListing {
  step: number;
  prefix: string;
  valid: boolean;
  /** Why the checkpoint is not usable; absent when valid. */
  reason?: string;
}

export interface LoadedCheckpoint {
  ref: CheckpointRef;
  files: Record<string, Uint8Array>;
  state: unknown;
}

export type Verification = 'sha256' | 'size';

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
}

export function validateRunId(runId: string): void {
  validateName(runId, 'run id');
}

function validateName(name: string, what: string): void {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name) || name.includes('..')) {
    throw new CheckpointError(
      `invalid ${what} ${JSON.stringify(name)}: 1-128 characters of letters, digits, '.', '_' and '-', starting with a letter or digit, without '..' or '/'`,
    );
  }
}

function validateStep(step: number): void {
  if (!Number.isSafeInteger(step) || step < 0 || step > MAX_STEP) {
    throw new CheckpointError(`invalid checkpoint step ${String(step)}: an integer from 0 to ${MAX_STEP}`);
  }
}

export function checkpointPrefix(runId: string, step: number): string {
  validateRunId(runId);
  validateStep(step);
  return `${runId}/checkpoints/${String(step).padStart(8, '0')}/`;
}

/** Generation 0 is manifest.json (every checkpoint from before generations); generation n is manifest.<n>.json. */
const manifestName = (generation: number): string => (generation === 0 ? MANIFEST_FILE : `manifest.${generation}.json`);
const MANIFEST_NAME = /^manifest(?:\.([1-9]\d{0,8}))?\.json$/;
const objectOf = (sha256: string): string => `objects/${sha256}`;
/** The key holding a manifest entry's bytes. */
const fileKey = (prefix: string, name: string, entry: ManifestEntry): string => prefix + (entry.object ?? name);

/** Whether `key` is a manifest (any generation) of checkpoint `step`; fault injection and tests aim at it. */
export function isManifestKey(key: string, step: number): boolean {
  const folder = `/checkpoints/${String(step).padStart(8, '0')}/`;
  const at = key.lastIndexOf(folder);
  return at >= 0 && MANIFEST_NAME.test(key.slice(at + folder.length));
}

/** The newest manifest generation of a step, from a listing of its prefix. */
function newestManifest(prefix: string, keys: readonly string[]): { generation: number; key: string } | undefined {
  let best: { generation: number; key: string } | undefined;
  for (const key of keys) {
    const match = MANIFEST_NAME.exec(key.slice(prefix.length));
    if (!match) continue;
    const generation = match[1] === undefined ? 0 : Number(match[1]);
    if (!best || generation > best.generation) best = { generation, key };
  }
  return best;
}

async function findManifest(store: BlobStore, prefix: string, opts: OpOptions): Promise<{ generation: number; key: string } | undefined> {
  return newestManifest(prefix, (await store.list(prefix, opts)).map((b) => b.key));
}

/** Where a committed checkpoint keeps file `name`, and the sha256 and size its manifest records (tests corrupt it; tools and evaluation units read it). */
export async function checkpointFile(store: BlobStore, runId: string, step: number, name: string, opts: OpOptions = {}): Promise<ManifestEntry & { key: string }> {
  const prefix = checkpointPrefix(runId, step);
  const found = await findManifest(store, prefix, opts);
  if (!found) throw new CheckpointError(`checkpoint ${prefix} in ${store.location} has no manifest`);
  const entry = (await readManifest(store, found.key, opts)).files[name];
  if (!entry) throw new CheckpointError(`checkpoint ${prefix} has no file ${name}`);
  return { ...entry, key: fileKey(prefix, name, entry) };
}

/** The key where a committed checkpoint keeps file `name`. */
export async function checkpointFileKey(store: BlobStore, runId: string, step: number, name: string, opts: OpOptions = {}): Promise<string> {
  return (await checkpointFile(store, runId, step, name, opts)).key;
}

/** A checkpoint's state.json alone (cheap: the model files are not read), checked against its size in the manifest. */
export async function readCheckpointState(store: BlobStore, runId: string, step: number, opts: OpOptions = {}): Promise<unknown> {
  const key = await checkpointFileKey(store, runId, step, STATE_FILE, opts);
  try {
    return JSON.parse(new TextDecoder().decode(await store.get(key, opts)));
  } catch (err) {
    if (err instanceof SyntaxError) throw new CheckpointError(`${STATE_FILE} of ${checkpointPrefix(runId, step)} is not valid JSON (${err.message})`);
    throw err;
  }
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes `files` and `state` as checkpoint `step`, then the manifest. Committing the same content to a
 * step that is already committed returns the existing reference (an activity retry is harmless);
 * different content for a committed step is an error, never a silent overwrite.
 */
export async function commitCheckpoint(
  store: BlobStore,
  runId: string,
  step: number,
  files: Record<string, Uint8Array>,
  state: object,
  opts: OpOptions = {},
): Promise<CheckpointRef> {
  const prefix = checkpointPrefix(runId, step);
  const stateBytes = encodeJson(state, 'checkpoint state');
  const all: Record<string, Uint8Array> = {};
  for (const [name, data] of Object.entries(files)) {
    validateName(name, 'checkpoint file name');
    if (MANIFEST_NAME.test(name) || name === STATE_FILE) throw new CheckpointError(`checkpoint file name ${name} is reserved`);
    if (!(data instanceof Uint8Array)) throw new CheckpointError(`checkpoint file ${name} must be a Uint8Array`);
    all[name] = data;
  }
  all[STATE_FILE] = stateBytes;
  const entries: Record<string, ManifestEntry> = {};
  for (const name of Object.keys(all).sort()) {
    const sha256 = sha256Hex(all[name]!);
    entries[name] = { sha256, bytes: all[name]!.byteLength, object: objectOf(sha256) };
  }
  const refusal = (how: string): CheckpointError => new CheckpointError(`checkpoint ${prefix} is already committed with different content${how}; refusing to overwrite it`);

  const listing = await store.list(prefix, opts);
  const newest = newestManifest(prefix, listing.map((b) => b.key));
  if (newest) {
    const existing = await readManifestIfValidJson(store, newest.key, opts);
    if (existing && validateManifestShape(existing, runId, step) === undefined && (await verifyCheckpoint(store, prefix, existing, 'sha256', opts)) === undefined) {
      if (sameFiles(existing.files, entries)) return { runId, step, prefix, manifestKey: newest.key, files: existing.files };
      throw refusal('');
    }
    // Not a valid checkpoint: a manifest of the next generation replaces it (the old one stays until then).
  }
  // Same content, same key and bytes: rewriting an object another writer of this content wrote is
  // harmless, and rewriting one that is there already repairs it if it was damaged.
  for (const [name, data] of Object.entries(all)) await store.put(fileKey(prefix, name, entries[name]!), data, opts);
  const manifestKey = prefix + manifestName(newest ? newest.generation + 1 : 0);
  const manifest: CheckpointManifest = { formatVersion: CHECKPOINT_FORMAT_VERSION, runId, step, createdAt: new Date().toISOString(), files: entries };
  if (!(await store.putIfAbsent(manifestKey, encodeJson(manifest, 'manifest'), opts))) {
    // Another writer created this manifest first: its content stands.
    const winner = await readManifestIfValidJson(store, manifestKey, opts);
    if (winner && sameFiles(winner.files, entries)) return { runId, step, prefix, manifestKey, files: winner.files };
    await removeUnreferenced(store, prefix, winner, opts);
    throw refusal(' by another writer a moment ago');
  }
  // Ours stands: older generations and any bytes no longer named are garbage.
  await removeUnreferenced(store, prefix, manifest, opts, manifestKey);
  return { runId, step, prefix, manifestKey, files: entries };
}

/**
 * Deletes what the step's winning manifest does not use: older manifests and unnamed objects (files
 * of a losing writer, or of a replaced generation). Never the winner's own objects, which a writer of
 * the same content may be rewriting with identical bytes.
 */
async function removeUnreferenced(store: BlobStore, prefix: string, winner: CheckpointManifest | undefined, opts: OpOptions, winnerKey?: string): Promise<void> {
  if (!winner || typeof winner.files !== 'object' || winner.files === null) return;
  const keep = new Set(Object.entries(winner.files).map(([name, entry]) => fileKey(prefix, name, entry)));
  const listing = (await store.list(prefix, opts)).map((b) => b.key);
  const newest = newestManifest(prefix, listing);
  for (const key of listing) {
    if (keep.has(key) || key === newest?.key) continue;
    if (MANIFEST_NAME.test(key.slice(prefix.length)) && winnerKey === undefined) continue;
    await store.delete(key, opts);
  }
}

/**
 * Every checkpoint step found under the run, ascending, each marked valid or invalid with the reason.
 * `verify: 'sha256'` (default) reads every file; `'size'` trusts sizes from the listing (cheap).
 */
export async function listCheckpoints(
  store: BlobStore,
  runId: string,
  options: OpOptions & { verify?: Verification } = {},
): Promise<CheckpointListing[]> {
  const steps = await findSteps(store, runId, options);
  const out: CheckpointListing[] = [];
  for (const step of steps) out.push(await inspectCheckpoint(store, runId, step, options.verify ?? 'sha256', options));
  return out;
}

/** The highest step whose checkpoint is fully valid (every sha256 checked), or undefined. */
export async function latestCheckpoint(store: BlobStore, runId: string, opts: OpOptions = {}): Promise<CheckpointRef | undefined> {
  const steps = await findSteps(store, runId, opts);
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i]!;
    const prefix = checkpointPrefix(runId, step);
    const found = await findManifest(store, prefix, opts);
    const manifest = found && (await readManifestIfValidJson(store, found.key, opts));
    if (!found || !manifest || validateManifestShape(manifest, runId, step) !== undefined) continue;
    if ((await verifyCheckpoint(store, prefix, manifest, 'sha256', opts)) === undefined) {
      return { runId, step, prefix, manifestKey: found.key, files: manifest.files };
    }
  }
  return undefined;
}

/** Reads every file of a checkpoint and its state, verifying each against the manifest. */
export async function loadCheckpoint(store: BlobStore, runId: string, step: number, opts: OpOptions = {}): Promise<LoadedCheckpoint> {
  const prefix = checkpointPrefix(runId, step);
  const fail = (reason: string): CheckpointError => new CheckpointError(`cannot load checkpoint ${prefix} in ${store.location}: ${reason}`);
  let manifest: CheckpointManifest;
  let manifestKey: string;
  try {
    ({ manifest, key: manifestKey } = await readNewestManifest(store, prefix, opts));
  } catch (err) {
    // Only a missing or unreadable manifest is the checkpoint's fault; a storage failure propagates as itself.
    if (err instanceof CheckpointError) throw fail(err.message);
    throw err;
  }
  const shapeProblem = validateManifestShape(manifest, runId, step);
  if (shapeProblem) throw fail(shapeProblem);
  const read = await readVerified(store, runId, step, manifest, manifestKey, opts);
  if ('reason' in read) throw fail(read.reason);
  return read;
}

/**
 * The highest fully valid checkpoint, loaded: each file is read once and verified as it is read (not
 * verified by one pass and read again by another). Newer checkpoints that fail verification are
 * reported in `skipped`, never chosen; a storage failure throws, so an outage never makes an older
 * checkpoint look like the latest.
 */
export async function loadLatestCheckpoint(
  store: BlobStore,
  runId: string,
  opts: OpOptions = {},
): Promise<{ checkpoint: LoadedCheckpoint | undefined; skipped: CheckpointListing[] }> {
  const steps = await findSteps(store, runId, opts);
  const skipped: CheckpointListing[] = [];
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i]!;
    const prefix = checkpointPrefix(runId, step);
    let manifest: CheckpointManifest;
    let manifestKey: string;
    try {
      ({ manifest, key: manifestKey } = await readNewestManifest(store, prefix, opts));
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      skipped.push({ step, prefix, valid: false, reason: err.message });
      continue;
    }
    const shapeProblem = validateManifestShape(manifest, runId, step);
    const read = shapeProblem ? { reason: shapeProblem } : await readVerified(store, runId, step, manifest, manifestKey, opts);
    if (!('reason' in read)) return { checkpoint: read, skipped };
    skipped.push({ step, prefix, valid: false, reason: read.reason });
  }
  return { checkpoint: undefined, skipped };
}

/** Every file of a checkpoint read and checked against its manifest, or the first reason it is not whole. */
async function readVerified(store: BlobStore, runId: string, step: number, manifest: CheckpointManifest, manifestKey: string, opts: OpOptions): Promise<LoadedCheckpoint | { reason: string }> {
  const prefix = checkpointPrefix(runId, step);
  const files: Record<string, Uint8Array> = {};
  let state: unknown;
  for (const [name, entry] of Object.entries(manifest.files)) {
    let data: Uint8Array;
    try {
      data = await store.get(fileKey(prefix, name, entry), opts);
    } catch (err) {
      if (err instanceof BlobNotFoundError) return { reason: `missing file ${name}` };
      throw err;
    }
    if (data.byteLength !== entry.bytes) return { reason: `size mismatch for ${name}: ${data.byteLength} bytes, manifest says ${entry.bytes}` };
    const digest = sha256Hex(data);
    if (digest !== entry.sha256) return { reason: `sha256 mismatch for ${name}: manifest ${entry.sha256}, file ${digest}` };
    if (name === STATE_FILE) {
      try {
        state = JSON.parse(new TextDecoder().decode(data));
      } catch (err) {
        return { reason: `${STATE_FILE} is not valid JSON (${(err as Error).message})` };
      }
    } else {
      files[name] = data;
    }
  }
  return { ref: { runId, step, prefix, manifestKey, files: manifest.files }, files, state };
}

export interface RetentionPolicy {
  /** Keep this many of the newest committed checkpoints. */
  keepLast: number;
  /** Also keep every checkpoint whose step is a multiple of this (0 = none). */
  keepEvery?: number;
  /** Steps kept whatever the rest says (a training run keeps its base, the KL reference policy). */
  protect?: readonly number[];
}

/**
 * Deletes checkpoints the policy does not keep. Only steps below the newest valid checkpoint are
 * touched: that one is always kept, and anything newer may still be in the middle of a commit.
 */
export async function applyRetention(
  store: BlobStore,
  runId: string,
  policy: RetentionPolicy,
  opts: OpOptions = {},
): Promise<{ kept: number[]; deleted: number[] }> {
  if (!Number.isInteger(policy.keepLast) || policy.keepLast < 1) throw new CheckpointError(`retention keepLast must be an integer >= 1, got ${policy.keepLast}`);
  const keepEvery = policy.keepEvery ?? 0;
  if (!Number.isInteger(keepEvery) || keepEvery < 0) throw new CheckpointError(`retention keepEvery must be an integer >= 0, got ${keepEvery}`);
  const latest = await latestCheckpoint(store, runId, opts);
  const listing = await listCheckpoints(store, runId, { ...opts, verify: 'size' });
  if (!latest) return { kept: listing.map((c) => c.step), deleted: [] };
  const committed = listing.filter((c) => c.valid && c.step <= latest.step).map((c) => c.step);
  const keep = new Set<number>([latest.step, ...committed.slice(-policy.keepLast), ...(policy.protect ?? [])]);
  if (keepEvery > 0) for (const step of committed) if (step % keepEvery === 0) keep.add(step);
  const deleted: number[] = [];
  for (const { step, prefix } of listing) {
    if (keep.has(step) || step > latest.step) continue;
    // Manifests first: a half-deleted checkpoint must read as invalid, not as a damaged valid one.
    const keys = (await store.list(prefix, opts)).map((b) => b.key);
    for (const key of keys.filter((k) => MANIFEST_NAME.test(k.slice(prefix.length)))) await store.delete(key, opts);
    for (const key of keys.filter((k) => !MANIFEST_NAME.test(k.slice(prefix.length)))) await store.delete(key, opts);
    deleted.push(step);
  }
  return { kept: listing.map((c) => c.step).filter((s) => !deleted.includes(s)), deleted };
}

async function findSteps(store: BlobStore, runId: string, opts: OpOptions): Promise<number[]> {
  validateRunId(runId);
  const root = `${runId}/checkpoints/`;
  const steps = new Set<number>();
  for (const { key } of await store.list(root, opts)) {
    const match = /^(\d{8})\//.exec(key.slice(root.length));
    if (match) steps.add(Number(match[1]));
  }
  return [...steps].sort((a, b) => a - b);
}

/** One checkpoint step, valid or invalid with the reason (`verify: 'sha256'` reads every file). */
export async function inspectCheckpoint(store: BlobStore, runId: string, step: number, verify: Verification, opts: OpOptions = {}): Promise<CheckpointListing> {
  const prefix = checkpointPrefix(runId, step);
  let manifest: CheckpointManifest;
  try {
    ({ manifest } = await readNewestManifest(store, prefix, opts));
  } catch (err) {
    // A storage failure is not a property of the checkpoint: it propagates instead of reading as "invalid".
    if (!(err instanceof CheckpointError)) throw err;
    return { step, prefix, valid: false, reason: err.message };
  }
  const reason = validateManifestShape(manifest, runId, step) ?? (await verifyCheckpoint(store, prefix, manifest, verify, opts));
  return reason === undefined ? { step, prefix, valid: true } : { step, prefix, valid: false, reason };
}

/** The newest generation's manifest of a step; CheckpointError when there is none or it is unreadable. */
async function readNewestManifest(store: BlobStore, prefix: string, opts: OpOptions): Promise<{ manifest: CheckpointManifest; key: string }> {
  const found = await findManifest(store, prefix, opts);
  if (!found) throw new CheckpointError('missing manifest');
  return { manifest: await readManifest(store, found.key, opts), key: found.key };
}

async function readManifest(store: BlobStore, key: string, opts: OpOptions): Promise<CheckpointManifest> {
  let bytes: Uint8Array;
  try {
    bytes = await store.get(key, opts);
  } catch (err) {
    if (err instanceof BlobNotFoundError) throw new CheckpointError('missing manifest');
    throw err;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as CheckpointManifest;
  } catch (err) {
    throw new CheckpointError(`unreadable manifest JSON: ${(err as Error).message}`);
  }
}

/** The manifest, or undefined when it is missing or not JSON; storage failures still throw, so an
 * outage can never make an older checkpoint look like the latest. */
async function readManifestIfValidJson(store: BlobStore, key: string, opts: OpOptions): Promise<CheckpointManifest | undefined> {
  try {
    return await readManifest(store, key, opts);
  } catch (err) {
    if (err instanceof CheckpointError) return undefined;
    throw err;
  }
}

function validateManifestShape(manifest: CheckpointManifest, runId: string, step: number): string | undefined {
  if (typeof manifest !== 'object' || manifest === null) return 'manifest is not a JSON object';
  if (manifest.formatVersion !== CHECKPOINT_FORMAT_VERSION) return `unsupported manifest formatVersion ${String(manifest.formatVersion)}`;
  if (manifest.runId !== runId) return `manifest runId ${JSON.stringify(manifest.runId)} does not match ${JSON.stringify(runId)}`;
  if (manifest.step !== step) return `manifest step ${String(manifest.step)} does not match folder step ${step}`;
  if (typeof manifest.files !== 'object' || manifest.files === null) return 'manifest has no files table';
  if (!(STATE_FILE in manifest.files)) return `manifest does not list ${STATE_FILE}`;
  for (const [name, entry] of Object.entries(manifest.files)) {
    if (!NAME_PATTERN.test(name) || name.includes('..') || name === MANIFEST_FILE) return `manifest lists an invalid file name ${JSON.stringify(name)}`;
    if (typeof entry?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256) || !Number.isSafeInteger(entry.bytes) || entry.bytes < 0) {
      return `manifest entry for ${name} is malformed`;
    }
    if (entry.object !== undefined && entry.object !== objectOf(entry.sha256)) return `manifest entry for ${name} names object ${JSON.stringify(entry.object)}, not its content's`;
  }
  return undefined;
}

/** undefined when every file matches the manifest; otherwise the first problem found. */
async function verifyCheckpoint(
  store: BlobStore,
  prefix: string,
  manifest: CheckpointManifest,
  verify: Verification,
  opts: OpOptions,
): Promise<string | undefined> {
  const present = new Map((await store.list(prefix, opts)).map((b) => [b.key, b.bytes]));
  for (const [name, entry] of Object.entries(manifest.files)) {
    const bytes = present.get(fileKey(prefix, name, entry));
    if (bytes === undefined) return `missing file ${name}`;
    if (bytes !== entry.bytes) return `size mismatch for ${name}: ${bytes} bytes, manifest says ${entry.bytes}`;
  }
  if (verify === 'size') return undefined;
  for (const [name, entry] of Object.entries(manifest.files)) {
    const hash = createHash('sha256');
    let stream;
    try {
      stream = await store.getStream(fileKey(prefix, name, entry), opts);
    } catch (err) {
      if (err instanceof BlobNotFoundError) return `missing file ${name}`;
      throw err;
    }
    for await (const chunk of stream) hash.update(chunk as Uint8Array);
    const digest = hash.digest('hex');
    if (digest !== entry.sha256) return `sha256 mismatch for ${name}: manifest ${entry.sha256}, file ${digest}`;
  }
  return undefined;
}

function sameFiles(a: Record<string, ManifestEntry>, b: Record<string, ManifestEntry>): boolean {
  const ak = Object.keys(a).sort();
  const bk = Object.keys(b).sort();
  return ak.length === bk.length && ak.every((k, i) => k === bk[i] && a[k]!.sha256 === b[k]!.sha256 && a[k]!.bytes === b[k]!.bytes);
}

function encodeJson(value: unknown, what: string): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, null, 2);
  } catch (err) {
    throw new CheckpointError(`${what} cannot be written as JSON: ${(err as Error).message}`);
  }
  if (text === undefined || typeof value !== 'object' || value === null) throw new CheckpointError(`${what} must be a JSON object`);
  return new TextEncoder().encode(text + '\n');
}
