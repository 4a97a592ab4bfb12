// A policy worker's memory budget and the check a run passes before the worker loads it: the peak of each
// engine phase the run's config plans (rollout, scoring, update), estimated by engine/memory.ts from the
// config's bounds, against the budget. A run that does not fit fails once, naming the fields to change,
// instead of being killed by the kernel at its first update and re-pinned until it gives up.
import { totalmem } from 'node:os';
import { longestTrainedSequence, type RunConfig } from '../dro/config.js';
import { estimateGenerateBytes, estimateScoreBytes, estimateUpdateBytes, formatGiB, resolveMicroBatchTokens, trainedParameterCount, type EngineOptions, type MemoryEstimate, type ModelConfig } from '../engine/index.js';
import { failure } from './errors.js';

/** The share of the machine's (or the cgroup's) memory a policy worker plans to use by default. */
export const DEFAULT_BUDGET_SHARE = 0.9;

/** The default budget: DEFAULT_BUDGET_SHARE of the memory this process may use (a cgroup's limit where one is set). */
export function defaultMemoryBudget(): number {
  const total = totalmem();
  const limit = process.constrainedMemory();
  // Node reports 0, or a huge number, where no cgroup limit applies.
  const usable = limit > 0 && limit < total ? limit : total;
  return Math.floor(usable * DEFAULT_BUDGET_SHARE);
}

export interface PhaseEstimate {
  phase: 'rollout' | 'scoring' | 'update';
  estimate: MemoryEstimate;
  /** What the estimate assumed, in the config's words. */
  shape: string;
  /** The fields that shrink this phase. */
  fields: string[];
}

/**
 * Each phase's estimated peak at the config's bounds, with `lora` as the engine trains it (engineOptions): sequences of data.maxPromptTokens + rollout.maxNewTokens
 * tokens (scoring adds data.maxReferenceTokens, R3's reference after the chain), so no batch of the run can
 * exceed them.
 */
export function runMemoryEstimates(config: RunConfig, model: ModelConfig, lora: EngineOptions['lora']): PhaseEstimate[] {
  const resident = { trainedParameters: trainedParameterCount(model, lora), lora: lora !== undefined };
  const micro = resolveMicroBatchTokens(config.update.microBatchTokens, model);
  const microText = `update.microBatchTokens = ${config.update.microBatchTokens === 'auto' ? `auto (${micro})` : micro}`;
  const chain = longestTrainedSequence(config);
  const scored = chain + config.data.maxReferenceTokens;
  const loraField = lora ? [] : ['model.loraRank'];
  return [
    {
      phase: 'rollout',
      estimate: estimateGenerateBytes(model, { ...resident, rows: config.rollout.batchSequences, length: chain }),
      shape: `rollout.batchSequences = ${config.rollout.batchSequences} sequences of up to ${chain} tokens`,
      fields: ['rollout.batchSequences', 'rollout.maxNewTokens', 'data.maxPromptTokens'],
    },
    {
      phase: 'scoring',
      // A call of rollout.batchSequences requests holds at most one shared prompt per two of them.
      estimate: estimateScoreBytes(model, { ...resident, tokens: Math.max(micro, scored), longest: scored, prefixTokens: Math.floor(config.rollout.batchSequences / 2) * config.data.maxPromptTokens }),
      shape: `${microText} tokens per call, sequences of up to ${scored} tokens`,
      fields: ['update.microBatchTokens', 'data.maxReferenceTokens', 'rollout.maxNewTokens', 'rollout.batchSequences', 'data.maxPromptTokens'],
    },
    {
      phase: 'update',
      // A batch of more tokens than one micro-batch holds accumulates gradients between sessions.
      estimate: estimateUpdateBytes(model, { ...resident, microBatchTokens: micro, longest: chain, accumulates: config.rollout.promptsPerStep * config.rollout.groupSize * chain > micro }),
      shape: `${microText} tokens per micro-batch, sequences of up to ${chain} tokens`,
      fields: ['update.microBatchTokens', 'rollout.maxNewTokens', ...loraField],
    },
  ];
}

/**
 * Throws InvalidConfig when 'auto' micro-batches are shorter than the run's longest sequence, and
 * InsufficientMemory naming the largest phase over `budget`, its estimate and the fields that shrink it.
 */
export function checkRunMemory(config: RunConfig, model: ModelConfig, lora: EngineOptions['lora'], budget: number, runId: string): void {
  const micro = resolveMicroBatchTokens(config.update.microBatchTokens, model);
  const longest = longestTrainedSequence(config);
  if (micro < longest) {
    throw failure('InvalidConfig', `run ${runId}: update.microBatchTokens = auto gives ${micro} tokens for this model, less than the longest sequence an update may train (data.maxPromptTokens + rollout.maxNewTokens = ${longest}); set update.microBatchTokens to at least ${longest}`);
  }
  const over = runMemoryEstimates(config, model, lora)
    .filter((p) => p.estimate.bytes > budget)
    .sort((a, b) => b.estimate.bytes - a.estimate.bytes);
  const worst = over[0];
  if (!worst) return;
  const parts = Object.entries(worst.estimate.parts)
    .map(([name, bytes]) => `${name} ${formatGiB(bytes)}`)
    .join(', ');
  throw failure(
    'InsufficientMemory',
    `run ${runId}: its ${worst.phase} needs about ${formatGiB(worst.estimate.bytes)} (${parts}) for ${worst.shape}, more than this policy worker's memory budget of ${formatGiB(budget)} (dro worker --memory); lower ${worst.fields.join(', ')}, or give the worker more memory`,
  );
}

/** A run's planned peak on a worker: its largest phase estimate. */
export function runPeakBytes(config: RunConfig, model: ModelConfig, lora: EngineOptions['lora']): number {
  return Math.max(...runMemoryEstimates(config, model, lora).map((p) => p.estimate.bytes));
}
