// The policy worker's engines: one engine thread per run, tagged with the version of the state it holds
// (run id, config hash, training step). Activities state the version they expect; a worker that does
// not hold it (restarted, never had the run, or its engine thread died) answers PolicyStateLost, the
// workflow's cue to pin a worker, load the last checkpoint there and replay from it.
import type { RunConfig } from '../dro/config.js';
import { ApplicationFailure } from '@temporalio/common';
import { EngineClient, formatGiB, type EngineOptions, type EngineSource, type PolicyTag } from '../engine/index.js';
import { failure } from './errors.js';
import { checkRunMemory, defaultMemoryBudget, runPeakBytes } from './memory-budget.js';
import type { RunData } from './run-data.js';
import type { PolicyVersion, PublishedPolicy, RunRef, UpdateSummary, WarmStartResult } from './types.js';

export interface HostedRun {
  engine: EngineClient;
  /** The last update applied, so a repeated update of that step returns it instead of applying twice. */
  lastUpdate?: { step: number; summary: UpdateSummary };
  /** The warm start this engine applied, so a repeated warm start returns it instead of failing. */
  warmStart?: WarmStartResult;
  /** The version this engine published last: units of that version may run on it. */
  published?: PublishedPolicy;
}

/** An engine that computes units of a run on a published version loaded from the store. */
interface UnitEngine {
  engine: EngineClient;
  configHash: string;
  version: PublishedPolicy | null;
}

/** How many unit engines (a run's training units, or its evaluations') a worker keeps loaded; the least recently used goes first. */
const UNIT_ENGINES = 3;

const sameVersion = (a: PublishedPolicy | null | undefined, b: PublishedPolicy): boolean => a !== null && a !== undefined && a.step === b.step && a.sha256 === b.sha256;

/** Where a run's model comes from: initialised from the run seed, or model.path (under LoRA, the frozen base). */
export function engineSource(config: RunConfig, data: RunData): EngineSource {
  return config.model.path === null ? { kind: 'init', config: data.modelConfig, seed: config.seed } : { kind: 'path', path: config.model.path };
}

/**
 * Where an engine that will be given a run's trained weights starts: full weights replace whatever it
 * starts with, so a seed's model will do (no model file is read); LoRA adapters need their base.
 */
export function engineSourceForWeights(config: RunConfig, data: RunData): EngineSource {
  return config.model.loraRank > 0 ? engineSource(config, data) : { kind: 'init', config: data.modelConfig, seed: config.seed };
}

/** How a run's engine runs and what it trains: every weight, or LoRA adapters initialised from the run seed. */
export function engineOptions(config: RunConfig): EngineOptions {
  const { model } = config;
  const options: EngineOptions = { intraOpThreads: model.intraOpThreads, executionProvider: model.executionProvider };
  if (model.loraRank > 0) options.lora = { rank: model.loraRank, alpha: model.loraAlpha, targets: model.loraTargets, seed: config.seed };
  return options;
}

const describe = (t: PolicyTag | undefined): string => (t ? `run ${t.runId}, config ${t.configHash.slice(0, 12)}, step ${t.step}` : 'no usable state');

/** What a worker may host (dro worker --memory, --max-runs, --threads). */
export interface HostLimits {
  /** Bytes the runs it hosts may plan to use together: a run alone whose estimated peak is larger is refused when it loads. */
  memoryBytes: number;
  /** Most runs pinned here at once. */
  maxRuns: number;
  /** Intra-op threads its pinned runs may use together (each run's model.intraOpThreads; never changed here). */
  threads: number;
}

/** By default only memory limits how many runs a worker hosts: runs that oversubscribe the cores are slower, not wrong. */
export const defaultHostLimits = (): HostLimits => ({ memoryBytes: defaultMemoryBudget(), maxRuns: Number.POSITIVE_INFINITY, threads: Number.POSITIVE_INFINITY });

/** How long a pin holds its place on a worker before the run loads there (a workflow lost between the two must not hold it for ever). */
const RESERVATION_MS = 5 * 60_000;
/** How long a pinned run may go without pinned work before its place is given to another run. */
const IDLE_RUN_MS = 6 * 3_600_000;

/** What a pinned run takes of a worker's limits. */
interface Share {
  bytes: number;
  threads: number;
}

export class PolicyHost {
  private readonly runs = new Map<string, HostedRun & { share: Share; lastUsed: number }>();
  private readonly unitEngines = new Map<string, UnitEngine>();
  /** Runs pinned here that have not loaded yet, with when their place lapses. */
  private readonly reserved = new Map<string, Share & { until: number }>();
  readonly limits: HostLimits;

  constructor(
    /** This worker's own task queue, where its pinned work arrives. */
    readonly queue: string,
    limits: Partial<HostLimits> = {},
  ) {
    this.limits = { ...defaultHostLimits(), ...limits };
  }

  /** The memory budget (dro worker --memory). */
  get memoryBytes(): number {
    return this.limits.memoryBytes;
  }

  private shareOf(run: RunRef, data: RunData): Share {
    return { bytes: runPeakBytes(run.config, data.modelConfig, engineOptions(run.config).lora), threads: run.config.model.intraOpThreads };
  }

  /**
   * Takes the pin of `run` when this worker has room for it beside the runs it hosts (--max-runs, the
   * memory budget and --threads); otherwise a retryable WorkerBusy failure, so the pin goes to another
   * worker. A worker with no other run always takes it: whether the run fits at all is checked when it loads.
   */
  admit(run: RunRef, data: RunData): void {
    const now = Date.now();
    for (const [runId, r] of this.reserved) if (r.until < now) this.reserved.delete(runId);
    // A run that ended without releasing its engine (its workflow terminated, or lost) holds no place once idle this long.
    for (const [runId, h] of this.runs) if (runId !== run.runId && now - h.lastUsed > IDLE_RUN_MS) void this.release(runId);
    const others = [...[...this.runs].filter(([id]) => id !== run.runId).map(([, h]) => h.share), ...[...this.reserved].filter(([id]) => id !== run.runId).map(([, r]) => r)];
    const share = this.shareOf(run, data);
    if (others.length > 0) {
      const bytes = others.reduce((a, o) => a + o.bytes, 0);
      const threads = others.reduce((a, o) => a + o.threads, 0);
      let full: string | undefined;
      if (others.length >= this.limits.maxRuns) full = `it hosts ${others.length} run(s), its limit (--max-runs ${this.limits.maxRuns})`;
      else if (bytes + share.bytes > this.limits.memoryBytes) full = `its runs plan ${formatGiB(bytes)}, and this one ${formatGiB(share.bytes)} more would pass its memory budget of ${formatGiB(this.limits.memoryBytes)} (--memory)`;
      else if (threads + share.threads > this.limits.threads) full = `its runs use ${threads} intra-op threads, and this one's ${share.threads} would pass its ${this.limits.threads} (--threads)`;
      if (full) throw ApplicationFailure.retryable(`policy worker ${this.queue} is busy: ${full}; the pin of run ${run.runId} goes to another worker`, 'WorkerBusy');
    }
    this.reserved.set(run.runId, { ...share, until: now + RESERVATION_MS });
  }

  /** A fresh engine thread for the run with its model initialised (or read from model.path), once its plan fits this worker's memory; replaces any old one. */
  async start(run: RunRef, data: RunData): Promise<HostedRun> {
    await this.release(run.runId);
    const options = engineOptions(run.config);
    checkRunMemory(run.config, data.modelConfig, options.lora, this.limits.memoryBytes, run.runId);
    const engine = await EngineClient.start(engineSource(run.config, data), options);
    const hosted = { engine, share: this.shareOf(run, data), lastUsed: Date.now() };
    this.reserved.delete(run.runId);
    this.runs.set(run.runId, hosted);
    return hosted;
  }

  /** The runs pinned here (loaded or about to be). */
  get hostedRuns(): number {
    return new Set([...this.runs.keys(), ...this.reserved.keys()]).size;
  }

  /** The run's engine if it holds exactly `expected`; otherwise a PolicyStateLost failure naming both. */
  async require(expected: PolicyVersion): Promise<HostedRun> {
    const hosted = this.runs.get(expected.runId);
    if (hosted) hosted.lastUsed = Date.now();
    let tag: PolicyTag | undefined;
    if (hosted) {
      try {
        tag = await hosted.engine.tag();
      } catch {
        // A dead engine thread holds nothing; fall through to the failure below.
        tag = undefined;
      }
    }
    if (!hosted || !tag || tag.runId !== expected.runId || tag.configHash !== expected.configHash || tag.step !== expected.step) {
      throw failure('PolicyStateLost', `policy worker ${this.queue} does not hold the expected policy state (expected ${describe(expected)}; holds ${hosted ? describe(tag) : 'nothing for this run'})`);
    }
    return hosted;
  }

  /** The run's engine at `step`, or at `step - 1` (an update not yet applied). */
  async requireEither(runId: string, configHash: string, step: number): Promise<{ hosted: HostedRun; applied: boolean }> {
    try {
      return { hosted: await this.require({ runId, configHash, step }), applied: true };
    } catch {
      return { hosted: await this.require({ runId, configHash, step: step - 1 }), applied: false };
    }
  }

  /**
   * The engine to compute a unit of `run` with on `version`: the run's pinned engine when it published
   * that very version and still holds it, else this worker's unit engine for the run, loaded with the
   * version's bytes (`fetch`) when it holds another. `loaded` says whether bytes were loaded.
   */
  async forUnit(run: RunRef, version: PublishedPolicy, data: RunData, fetch: () => Promise<Uint8Array>, slot: 'train' | 'eval' = 'train'): Promise<{ engine: EngineClient; loaded: boolean }> {
    const pinned = this.runs.get(run.runId);
    if (pinned && sameVersion(pinned.published, version) && (await this.holds(pinned.engine, versionOf(run, version.step)))) return { engine: pinned.engine, loaded: false };
    // Evaluation units keep an engine of their own, so they do not evict the version the run's training units compute on.
    const slotKey = `${slot}:${run.runId}`;
    let unit = this.unitEngines.get(slotKey);
    this.unitEngines.delete(slotKey);
    if (unit && unit.configHash !== run.configHash) {
      await unit.engine.dispose();
      unit = undefined;
    }
    if (unit && sameVersion(unit.version, version) && (await this.holds(unit.engine, versionOf(run, version.step)))) {
      this.unitEngines.set(slotKey, unit);
      return { engine: unit.engine, loaded: false };
    }
    if (!unit) {
      for (const [key, old] of [...this.unitEngines].slice(0, Math.max(0, this.unitEngines.size - UNIT_ENGINES + 1))) {
        this.unitEngines.delete(key);
        await old.engine.dispose();
      }
      const options = engineOptions(run.config);
      try {
        checkRunMemory(run.config, data.modelConfig, options.lora, this.memoryBytes, run.runId);
      } catch (err) {
        // Retryable, unlike a pin: another worker of the pool may have the memory this one lacks.
        throw new Error(`policy worker ${this.queue} cannot compute units of this run: ${(err as Error).message}`, { cause: err });
      }
      unit = { engine: await EngineClient.start(engineSourceForWeights(run.config, data), options), configHash: run.configHash, version: null };
    }
    this.unitEngines.set(slotKey, unit);
    const parameters = await fetch();
    if (version.base !== null) {
      const here = await unit.engine.baseDigest();
      // Retryable: another worker's model.path may hold the right base.
      if (here !== version.base) throw new Error(`policy worker ${this.queue} has a LoRA base with sha256 ${here.slice(0, 12)} at model.path, not the ${version.base.slice(0, 12)} the run trains on: its units go to other workers`);
    }
    unit.version = null;
    await unit.engine.loadState({ parameters, optimizer: null, reference: null, tag: versionOf(run, version.step) });
    unit.version = version;
    return { engine: unit.engine, loaded: true };
  }

  /** Whether `engine` is alive and tagged `expected`: a unit checks it before and after computing, so an update between them is seen. */
  async holds(engine: EngineClient, expected: PolicyVersion): Promise<boolean> {
    try {
      const tag = await engine.tag();
      return tag !== undefined && tag.runId === expected.runId && tag.configHash === expected.configHash && tag.step === expected.step;
    } catch {
      return false;
    }
  }

  async release(runId: string): Promise<void> {
    const hosted = this.runs.get(runId);
    this.runs.delete(runId);
    this.reserved.delete(runId);
    if (hosted) await hosted.engine.dispose();
  }

  async shutdown(): Promise<void> {
    for (const runId of [...this.runs.keys()]) await this.release(runId);
    for (const [runId, unit] of [...this.unitEngines]) {
      this.unitEngines.delete(runId);
      await unit.engine.dispose();
    }
  }
}

/** The worker's PolicyHost, or the failure a control-only worker gives for policy work. */
export function requireHost(host: PolicyHost | undefined): PolicyHost {
  if (!host) throw failure('InvalidConfig', 'this worker has no policy engine (it runs the control role only)');
  return host;
}

export const versionOf = (run: RunRef, step: number): PolicyVersion => ({ runId: run.runId, configHash: run.configHash, step });
