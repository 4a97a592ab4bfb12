// The activities of one DRO training step (docs/architecture.md, "One training step"), named as in the paper: sample the batch,
// roll out G chains per prompt, score the reference outcome after each chain, turn the scores into
// rewards and advantages, apply the GRPO update, record the step's metrics. Each reads its inputs from
// and writes its outputs to deterministic store keys, so running one twice changes nothing.
import { ROUGE_REWARD_TASKS, type RunConfig } from '../dro/config.js';
import { groupAdvantages } from '../dro/advantages.js';
import { filterInformativeGroups } from '../dro/group-filter.js';
import { reasoningReflectionReward } from '../dro/r3.js';
import { combineRewards, lengthPenalty, rouge1F1 } from '../dro/rewards.js';
import { mean, populationStd } from '../dro/stats.js';
import { configAt, type HyperparameterChange } from '../dro/hyperparameters.js';
import { learningRateAt } from '../dro/schedule.js';
import { DataSampler, initialCursor as initialSamplerCursor } from '../datasets/sampler.js';
import { countedTokens, NonFiniteUpdateError, PolicyTagMismatchError, trainStepOptionsOf, type EngineClient, type GenerateResult, type SamplingOptions, type TrainSequence } from '../engine/index.js';
import { chunks, seconds, withHeartbeat, type Progress, type StoreOpener } from './context.js';
import { failure } from './errors.js';
import type { FaultPlan } from './faults.js';
import { publishPolicy } from './policy-versions.js';
import { readJson, runKeys, writeChangeLog, writeJson, writeStepMetrics } from './records.js';
import type { PolicyHost } from './policy-host.js';
import { requireHost, versionOf } from './policy-host.js';
import { readSubset } from './policy-state.js';
import { MASKED_CHAIN, runData, type RunData } from './run-data.js';
import type { RewardSummary, RolloutSummary, RunRef, SampleBatchResult, ScoreSummary, StepRecordInput, UpdateSummary } from './types.js';
import type { SamplerCursor } from '../datasets/sampler.js';

/** rollout.json: every group's prompt and its G completions, in batch-plan order. */
export interface RolloutArtifact {
  step: number;
  groups: { exampleId: string; promptIds: number[]; completions: { ids: number[]; text: string; truncated: boolean }[] }[];
}

/** scores.json: log-probs and ranks of the reference outcome after each chain (G × L per group). */
export interface ScoresArtifact {
  step: number;
  groups: { exampleId: string; logprobs: number[][]; ranks: number[][]; masked: number[] | null }[];
}

/** rewards.json: per group the training rewards, the advantages, and whether the group trains. */
export interface RewardsArtifact {
  step: number;
  reward: RunConfig['dro']['reward'];
  groups: { exampleId: string; rewards: number[]; advantages: number[]; kept: boolean }[];
}

/** Generates completions for (prompt, key) requests in the config's fixed chunks, heartbeating progress. */
export async function generateInPlan(
  engine: EngineClient,
  requests: { promptIds: number[]; key: { seed: number | string; step: number; exampleId: string; sampleIndex: number } }[],
  sampling: { temperature: number; topP: number; maxNewTokens: number; stopTokenIds: number[] },
  chunkSize: number,
  progress: Progress,
): Promise<GenerateResult[]> {
  const out: GenerateResult[] = [];
  let tokens = 0;
  // The run config has neither top-k nor stop sequences: runs sample from the whole nucleus and stop at the end token.
  const options: SamplingOptions = { ...sampling, topK: 0, stopSequences: [] };
  for (const chunk of chunks(requests, chunkSize)) {
    const results = await engine.generate(chunk, options, {
      signal: progress.signal,
      onProgress: (n) => progress.report({ sequences: out.length, of: requests.length, tokens: tokens + n }),
    });
    for (const r of results) tokens += r.ids.length;
    out.push(...results);
  }
  return out;
}

/** A rollout's keys: (seed, step, chains per prompt); every draw is keyed by (seed, step, example, chain). */
export interface RolloutKey {
  seed: number | string;
  step: number;
  chains: number;
}

/** The generation requests of `prompts` in plan order: `key.chains` per prompt, each keyed by its own chain index. */
export function rolloutRequests(prompts: { id: string; promptIds: number[] }[], key: RolloutKey) {
  return prompts.flatMap((p) => Array.from({ length: key.chains }, (_, i) => ({ promptIds: p.promptIds, key: { seed: key.seed, step: key.step, exampleId: p.id, sampleIndex: i } })));
}

/** The rollout sampling of `config`: the run samples from the whole nucleus and stops at the end token. */
export const rolloutSampling = (config: RunConfig, data: RunData) => ({ temperature: config.rollout.temperature, topP: config.rollout.topP, maxNewTokens: config.rollout.maxNewTokens, stopTokenIds: [data.eos] });

/** A completion as the step's artifacts hold it: its tokens, their text, and whether it hit the token limit. */
export const completionOf = (data: RunData, r: GenerateResult): RolloutArtifact['groups'][number]['completions'][number] => ({ ids: r.ids, text: data.tokenizer.decode(r.ids, { skipSpecialTokens: true }), truncated: r.truncated });

/** Completions in plan order, grouped by prompt. */
export function groupCompletions(prompts: { id: string; promptIds: number[] }[], completions: RolloutArtifact['groups'][number]['completions'], chains: number): RolloutArtifact['groups'] {
  return prompts.map((p, g) => ({ exampleId: p.id, promptIds: p.promptIds, completions: completions.slice(g * chains, (g + 1) * chains) }));
}

/**
 * `chains` completions per prompt with the rollout sampling, generated in the config's fixed chunks and
 * grouped by prompt; each draw keyed by (seed, step, example, chain), so no result depends on batching.
 */
export async function sampleGroups(
  engine: EngineClient,
  data: RunData,
  config: RunConfig,
  prompts: { id: string; promptIds: number[] }[],
  key: RolloutKey,
  progress: Progress,
): Promise<RolloutArtifact['groups']> {
  const results = await generateInPlan(engine, rolloutRequests(prompts, key), rolloutSampling(config, data), config.rollout.batchSequences, progress);
  return groupCompletions(prompts, results.map((r) => completionOf(data, r)), key.chains);
}

/** The prompts of a step's training examples, in plan order. */
export function stepPrompts(data: RunData, step: number, exampleIds: string[]): { id: string; promptIds: number[] }[] {
  return exampleIds.map((id) => {
    const example = data.train.get(id);
    if (!example) throw failure('InvalidData', `step ${step}: example ${id} is not in the training set`);
    return { id, promptIds: data.promptIds(example) };
  });
}

/** A rollout's numbers for the step record. */
export function rolloutSummaryOf(data: RunData, artifact: RolloutArtifact, started: number): RolloutSummary {
  const completions = artifact.groups.flatMap((g) => g.completions);
  return {
    sequences: completions.length,
    generatedTokens: completions.reduce((a, c) => a + c.ids.length, 0),
    meanCompletionTokens: mean(completions.map((c) => c.ids.length)),
    truncatedShare: mean(completions.map((c) => (c.truncated ? 1 : 0))),
    malformedShare: mean(completions.map((c) => (data.task.parseCompletion(c.text).wellFormed ? 0 : 1))),
    seconds: seconds(started),
  };
}

/** The batch plan of scoring: engine calls of rollout.batchSequences requests, each packed by update.microBatchTokens. */
export interface ScorePlan {
  chunkSize: number;
  microBatchTokens: number | 'auto';
}

export const scorePlanOf = (config: RunConfig): ScorePlan => ({ chunkSize: config.rollout.batchSequences, microBatchTokens: config.update.microBatchTokens });

/** Scores `ids[targetStart..]` for each request in the plan's fixed chunks; policy 'reference' is the frozen KL reference. */
export async function scoreInPlan(
  engine: EngineClient,
  requests: { ids: number[]; targetStart: number }[],
  plan: ScorePlan,
  progress: Progress,
  policy: 'current' | 'reference' = 'current',
): Promise<{ logprobs: number[]; ranks: number[] }[]> {
  const out: { logprobs: number[]; ranks: number[] }[] = [];
  for (const chunk of chunks(requests, plan.chunkSize)) {
    out.push(...(await engine.score(chunk, { policy, microBatchTokens: plan.microBatchTokens, signal: progress.signal })));
    progress.report({ scored: out.length, of: requests.length });
  }
  return out;
}

/** How the reference-scoring requests map back to groups: per group its example and chain count. */
export type ScoreShape = { exampleId: string; count: number }[];

/** The requests of R3's reference scoring in plan order: per group the reference after each chain, then after the masked chain when asked. */
export function referenceScoreRequests(data: RunData, groups: RolloutArtifact['groups'], masked: boolean): { requests: { ids: number[]; targetStart: number }[]; shape: ScoreShape } {
  const requests: { ids: number[]; targetStart: number }[] = [];
  const shape: ScoreShape = [];
  for (const g of groups) {
    const example = data.train.get(g.exampleId);
    if (!example) throw failure('InvalidData', `example ${g.exampleId} is not in the training set`);
    const reference = data.referenceIds(example);
    for (const c of g.completions) {
      const context = data.chainContextIds(g.promptIds, data.task.parseCompletion(c.text).chain);
      requests.push({ ids: [...context, ...reference], targetStart: context.length });
    }
    if (masked) {
      const context = data.chainContextIds(g.promptIds, MASKED_CHAIN);
      requests.push({ ids: [...context, ...reference], targetStart: context.length });
    }
    shape.push({ exampleId: g.exampleId, count: g.completions.length });
  }
  return { requests, shape };
}

/** Scored requests (in plan order) back into groups, with the tokens scored. */
export function groupScores(shape: ScoreShape, scored: { logprobs: number[]; ranks: number[] }[], masked: boolean): { groups: ScoresArtifact['groups']; tokens: number } {
  let k = 0;
  let tokens = 0;
  const groups = shape.map(({ exampleId, count }) => {
    const rows = scored.slice(k, k + count);
    k += count;
    const maskedRow = masked ? scored[k++]!.logprobs : null;
    tokens += rows.reduce((a, r) => a + r.logprobs.length, 0) + (maskedRow?.length ?? 0);
    return { exampleId, logprobs: rows.map((r) => r.logprobs), ranks: rows.map((r) => r.ranks), masked: maskedRow };
  });
  return { groups, tokens };
}

/** Teacher-forced reference scores after each chain (and after the masked chain when asked). */
export async function scoreReferenceAfterChains(
  engine: EngineClient,
  data: RunData,
  groups: RolloutArtifact['groups'],
  options: { masked: boolean; plan: ScorePlan },
  progress: Progress,
): Promise<{ groups: ScoresArtifact['groups']; tokens: number }> {
  const { requests, shape } = referenceScoreRequests(data, groups, options.masked);
  return groupScores(shape, await scoreInPlan(engine, requests, options.plan, progress), options.masked);
}

const stats = (xs: number[]): { mean: number; std: number } => (xs.length === 0 ? { mean: 0, std: 0 } : { mean: mean(xs), std: populationStd(xs) });

export function createTrainingStepActivities(deps: { host?: PolicyHost; openStore: StoreOpener; faults: FaultPlan }) {
  const needHost = (): PolicyHost => requireHost(deps.host);

  /** What a phase of step `step` works with: the engine holding the policy of step − 1, the data, the store. */
  async function beforeStep(run: RunRef, step: number) {
    const hosted = await needHost().require(versionOf(run, step - 1));
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(run.config.checkpoint.store);
    return { hosted, config: configAt(run.config, run.hyperparameters, step), data, store };
  }

  /** The data cursor a run starts with (its format belongs to datasets/sampler.ts, not to the workflow). */
  async function initialCursor(run: RunRef): Promise<SamplerCursor> {
    return Promise.resolve(initialSamplerCursor(run.config.seed));
  }

  /** The next prompts from the current (filtered) subset, by the resumable cursor. */
  async function sampleBatch(run: RunRef, input: { cursor: SamplerCursor; subsetVersion: number }): Promise<SampleBatchResult> {
    const data = await runData(run.config, run.configHash);
    const store = await deps.openStore(run.config.checkpoint.store);
    const subset = await readSubset(store, data, run.runId, input.subsetVersion);
    const sampler = new DataSampler(subset, input.cursor);
    const exampleIds = sampler.nextBatch(run.config.rollout.promptsPerStep);
    return { exampleIds, cursor: sampler.cursor };
  }

  /** G completions (a reasoning chain, then the policy's own final answer) per prompt, with the policy of step − 1. */
  async function rollout(run: RunRef, input: { step: number; exampleIds: string[] }): Promise<RolloutSummary> {
    const started = performance.now();
    const { hosted, config, data, store } = await beforeStep(run, input.step);
    return withHeartbeat(async (progress) => {
      const prompts = stepPrompts(data, input.step, input.exampleIds);
      deps.faults.at('rollout', input.step);
      const groups = await sampleGroups(hosted.engine, data, config, prompts, { seed: config.seed, step: input.step, chains: config.rollout.groupSize }, progress);
      const artifact: RolloutArtifact = { step: input.step, groups };
      await writeJson(store, runKeys.rollout(run.runId, input.step), artifact, progress.signal);
      return rolloutSummaryOf(data, artifact, started);
    });
  }

  /** log π(y_j | q, c_i, y_<j) and ranks for every chain of the step (and the masked chain for that contrast). */
  async function scoreReference(run: RunRef, input: { step: number }): Promise<ScoreSummary> {
    const started = performance.now();
    const { hosted, config, data, store } = await beforeStep(run, input.step);
    return withHeartbeat(async (progress) => {
      const rolloutArtifact = await readJson<RolloutArtifact>(store, runKeys.rollout(run.runId, input.step), progress.signal);
      const { groups, tokens } = await scoreReferenceAfterChains(hosted.engine, data, rolloutArtifact.groups, { masked: config.dro.r3.contrast === 'masked', plan: scorePlanOf(config) }, progress);
      await writeJson(store, runKeys.scores(run.runId, input.step), { step: input.step, groups } satisfies ScoresArtifact, progress.signal);
      return { sequences: groups.reduce((a, g) => a + g.logprobs.length + (g.masked ? 1 : 0), 0), scoredTokens: tokens, seconds: seconds(started) };
    });
  }

  /** Rewards of every kind the task allows (R3 or the configured baseline trains), advantages and the group filter. */
  async function computeRewards(run: RunRef, input: { step: number }): Promise<RewardSummary> {
    const started = performance.now();
    const { config } = run;
    const data = await runData(config, run.configHash);
    const store = await deps.openStore(config.checkpoint.store);
    const rolloutArtifact = await readJson<RolloutArtifact>(store, runKeys.rollout(run.runId, input.step));
    const scores = await readJson<ScoresArtifact>(store, runKeys.scores(run.runId, input.step));
    const kinds: Record<string, number[]> = { r3: [], aggregate: [], lengthPenalty: [] };
    const sigmas: number[] = [];
    let maxStd = 0;
    const topShares: number[] = [];
    const groups = rolloutArtifact.groups.map((g, gi) => {
      const s = scores.groups[gi]!;
      const example = data.train.get(g.exampleId)!;
      const reference = data.task.referenceOutcome(example);
      const L = s.logprobs[0]!.length;
      // The answer the task's metrics score too (Task.parseCompletion), so training and evaluation check the same text.
      const answers = g.completions.map((c) => data.task.parseCompletion(c.text).answer);
      const penalties = answers.map((a) => lengthPenalty(L, data.tokenizer.encode(a).length, config.dro.lengthBeta));
      const masked = s.masked ?? undefined;
      const r3 = reasoningReflectionReward(s.logprobs, config.dro.r3, masked);
      const aggregate = reasoningReflectionReward(s.logprobs, { ...config.dro.r3, weighting: 'uniform' }, masked);
      const combine = (raw: number[]): number[] => combineRewards(raw, penalties, { referenceLength: L, lengthWeight: config.dro.lengthWeight });
      const byKind: Record<string, number[]> = { r3: combine(r3.rewards), aggregate: combine(aggregate.rewards), lengthPenalty: penalties };
      if (data.task.answerCorrect) byKind.correctness = answers.map((a) => (data.task.answerCorrect!(a, example) ? 1 : 0));
      if (ROUGE_REWARD_TASKS.includes(data.task.name)) byKind.rouge1 = answers.map((a) => rouge1F1(a, reference));
      for (const [k, v] of Object.entries(byKind)) (kinds[k] ??= []).push(...v);
      sigmas.push(...r3.tokenStd);
      maxStd = Math.max(maxStd, ...r3.tokenStd);
      const sorted = [...r3.tokenWeights].sort((a, b) => b - a);
      const top = Math.max(1, Math.ceil(sorted.length / 10));
      topShares.push(sorted.slice(0, top).reduce((a, b) => a + b, 0) / sorted.reduce((a, b) => a + b, 0));
      const rewards = byKind[config.dro.reward];
      if (!rewards) throw failure('InvalidConfig', `dro.reward: '${config.dro.reward}' is not available for task ${data.task.name}`);
      return { exampleId: g.exampleId, rewards, advantages: groupAdvantages(rewards, { scale: config.dro.advantageScale, epsilon: config.dro.advantageEpsilon }) };
    });
    const filtered = filterInformativeGroups(groups, { minRewardStd: config.dro.minRewardStd });
    const keptSet = new Set(filtered.kept);
    const artifact: RewardsArtifact = { step: input.step, reward: config.dro.reward, groups: groups.map((g) => ({ ...g, kept: keptSet.has(g) })) };
    await writeJson(store, runKeys.rewards(run.runId, input.step), artifact);
    return {
      rewards: Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, stats(v)])),
      tokenWeights: { meanStd: sigmas.length ? mean(sigmas) : 0, maxStd, topDecileWeightShare: topShares.length ? mean(topShares) : 0 },
      groups: groups.length,
      skippedGroups: filtered.droppedCount,
      seconds: seconds(started),
    };
  }

  /** The GRPO update of `step`: old and reference log-probs by the training engine itself, then updatesPerStep AdamW steps, all or nothing. */
  async function update(run: RunRef, input: { step: number }): Promise<UpdateSummary> {
    const started = performance.now();
    const config = configAt(run.config, run.hyperparameters, input.step);
    const { hosted, applied } = await needHost().requireEither(run.runId, run.configHash, input.step);
    if (applied) {
      if (hosted.lastUpdate?.step === input.step) return hosted.lastUpdate.summary;
      throw failure('PolicyStateLost', `step ${input.step} is applied on this worker but its result is not recorded here`);
    }
    const store = await deps.openStore(config.checkpoint.store);
    return withHeartbeat(async (progress) => {
      const rolloutArtifact = await readJson<RolloutArtifact>(store, runKeys.rollout(run.runId, input.step), progress.signal);
      const rewards = await readJson<RewardsArtifact>(store, runKeys.rewards(run.runId, input.step), progress.signal);
      const nan = deps.faults.at('nan-loss', input.step);
      const sequences: TrainSequence[] = [];
      rolloutArtifact.groups.forEach((g, gi) => {
        const r = rewards.groups[gi]!;
        if (!r.kept) return;
        // The injected NaN must reach the loss: a batch whose chains are all masked truncations has none,
        // so under the fault every chain carries loss.
        g.completions.forEach((c, i) => sequences.push({ ids: [...g.promptIds, ...c.ids], completionStart: g.promptIds.length, advantage: nan ? Number.NaN : r.advantages[i]!, truncated: nan ? false : c.truncated }));
      });
      const learningRate = learningRateAt(input.step, { peak: config.optimizer.learningRate, totalSteps: config.schedule.totalSteps, warmupSteps: config.schedule.warmupSteps, kind: config.schedule.lrSchedule, minLrRatio: config.schedule.minLrRatio });
      // A sequence without counted tokens (a masked truncation) is never run by the engine and needs no log-probs.
      const tokens = countedTokens(sequences, config.dro.maskTruncated);
      const counted = sequences.filter((_, i) => tokens[i]! > 0);
      const requests = counted.map((s) => ({ ids: s.ids, targetStart: s.completionStart }));
      const scoring = performance.now();
      const old = await scoreInPlan(hosted.engine, requests, scorePlanOf(config), progress);
      const reference = config.dro.klBeta > 0 ? await scoreInPlan(hosted.engine, requests, scorePlanOf(config), progress, 'reference') : old;
      const scoreSeconds = seconds(scoring);
      let klSum = 0;
      let klCount = 0;
      counted.forEach((s, i) => {
        s.oldLogprobs = old[i]!.logprobs;
        s.referencePolicyLogprobs = reference[i]!.logprobs;
        s.oldLogprobs.forEach((lp, j) => {
          const d = s.referencePolicyLogprobs![j]! - lp;
          klSum += Math.exp(d) - d - 1;
          klCount++;
        });
      });
      deps.faults.at('update', input.step);
      const options = { loss: 'grpo' as const, learningRate, ...trainStepOptionsOf(config) };
      const steps = sequences.length === 0 ? [] : Array.from({ length: config.optimizer.updatesPerStep }, () => ({ sequences, options }));
      let results;
      try {
        results = await hosted.engine.train(steps, { signal: progress.signal, expect: versionOf(run, input.step - 1), next: versionOf(run, input.step) });
      } catch (err) {
        if (err instanceof NonFiniteUpdateError) throw failure('NonFiniteUpdate', `training step ${input.step}: ${err.message}`, err);
        if (err instanceof PolicyTagMismatchError) throw failure('PolicyStateLost', err.message, err);
        throw err;
      }
      // The version the next step's units need, for any worker of the pool.
      const publishing = performance.now();
      const policy = await publishPolicy(store, run.runId, config, input.step, hosted.engine, progress.signal);
      hosted.published = policy;
      const last = results.at(-1);
      const summary: UpdateSummary = {
        applied: results.length > 0,
        loss: last?.loss ?? null,
        gradNorm: last?.gradNorm ?? null,
        kl: klCount > 0 ? klSum / klCount : null,
        // The first update's ratio is exactly 1 (old = current), so nothing clips; later updates are not measured.
        clipFraction: results.length === 1 ? 0 : null,
        learningRate,
        trainedTokens: results.reduce((a, r) => a + r.tokens, 0),
        scoredTokens: requests.reduce((a, r) => a + r.ids.length - r.targetStart, 0) * (config.dro.klBeta > 0 ? 2 : 1),
        seconds: seconds(started),
        scoreSeconds,
        policy,
        publishSeconds: seconds(publishing),
      };
      hosted.lastUpdate = { step: input.step, summary };
      await writeJson(store, runKeys.update(run.runId, input.step), summary, progress.signal);
      return summary;
    });
  }

  /** metrics/<step>.json: every number of the step; `timing` holds the only values a replay may change. */
  async function recordStep(run: RunRef, input: StepRecordInput): Promise<void> {
    const store = await deps.openStore(run.config.checkpoint.store);
    const { rollout: r, score: s, reward: w, update: u } = input;
    const settings = configAt(run.config, run.hyperparameters, input.step);
    await writeStepMetrics(store, run.runId, {
      step: input.step,
      // computeRewards refuses a training reward the task cannot compute, so it is always among the kinds.
      reward: w.rewards[run.config.dro.reward]!,
      rewards: w.rewards,
      r3TokenWeights: w.tokenWeights,
      loss: u.loss,
      gradNorm: u.gradNorm,
      kl: u.kl,
      clipFraction: u.clipFraction,
      learningRate: u.learningRate,
      klBeta: settings.dro.klBeta,
      temperature: settings.rollout.temperature,
      completionTokens: r.meanCompletionTokens,
      truncatedShare: r.truncatedShare,
      malformedShare: r.malformedShare,
      skippedGroupShare: w.groups === 0 ? 0 : w.skippedGroups / w.groups,
      tokens: { generated: r.generatedTokens, scored: s.scoredTokens + u.scoredTokens, trained: u.trainedTokens },
      timing: { rollout: r.seconds, score: s.seconds, reward: w.seconds, update: u.seconds },
    });
  }

  /** The run's change log: every hyper-parameter change accepted so far and the config changes of its resumes, read back by `dro resume`. */
  async function recordHyperparameters(run: RunRef, changes: HyperparameterChange[]): Promise<void> {
    const store = await deps.openStore(run.config.checkpoint.store);
    await writeChangeLog(store, { runId: run.runId, changes, ...(run.configChanges?.length ? { configChanges: run.configChanges } : {}) });
  }

  return { initialCursor, sampleBatch, rollout, scoreReference, computeRewards, update, recordStep, recordHyperparameters };
}
