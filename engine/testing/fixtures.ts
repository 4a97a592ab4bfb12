// Test-only helpers shared by the engine's tests: the tiny model, engine, sampling and training options
// from a default run's config (the engine has no defaults of its own), engines released after the file's
// tests, keyed random ids, one training update through the engine's API, and scores checked against the
// slow reference forward pass.
import { afterAll, expect } from 'vitest';
import { parseRunConfig } from '../../dro/config.js';
import { uniform } from '../../dro/random.js';
import type { EngineApi, RemoteEngineApi, TrainOptions } from '../api.js';
import { parseModelConfig, type ModelConfig } from '../model/config.js';
import type { EngineOptions, PolicyEngine } from '../policy.js';
import type { SamplingOptions } from '../sampling.js';
import type { ScoreRequest, ScoreResult } from '../scoring.js';
import { referenceLogprobsAndRanks, type ParamTensors } from '../../test/reference/llama-forward.js';
import { trainStepOptionsOf, type TrainSequence, type TrainStepOptions, type TrainStepResult } from '../training.js';

/** A default run's config: where every option below takes its values. */
const RUN = parseRunConfig({});

/** The tiny Llama-style model most engine tests use (13 tokens, 16 wide, 2 layers), with a test's changes. */
export function tinyModelConfig(changes: Record<string, unknown> = {}, source = 'tiny test config'): ModelConfig {
  const raw = { vocab_size: 13, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64, initializer_range: 0.3 };
  return parseModelConfig({ ...raw, ...changes }, source);
}

/** Tiny models of every attention layout the forward pass has (grouped, one KV head with QKV bias and tied embeddings, multi-head). */
export function attentionVariants(): [string, ModelConfig][] {
  return [
    ['grouped-query attention, untied', tinyModelConfig()],
    ['QKV bias, tied embeddings, 1 KV head', tinyModelConfig({ model_type: 'qwen2', tie_word_embeddings: true, num_key_value_heads: 1 })],
    ['multi-head (KV heads = heads), rope_theta 500', tinyModelConfig({ num_key_value_heads: 4, rope_theta: 500 })],
  ];
}

/** How a default run starts its engine (threads, execution provider), with a test's additions (dtype, LoRA). */
export function engineOptions(extra: Partial<EngineOptions> = {}): EngineOptions {
  return { intraOpThreads: RUN.model.intraOpThreads, executionProvider: RUN.model.executionProvider, ...extra };
}

/** A default run's rollout sampling, with a test's overrides. Runs use neither top-k nor stop sequences. */
export function samplingOptions(overrides: Partial<SamplingOptions> = {}): SamplingOptions {
  const { rollout } = RUN;
  return { temperature: rollout.temperature, topP: rollout.topP, topK: 0, maxNewTokens: rollout.maxNewTokens, stopTokenIds: [], stopSequences: [], ...overrides };
}

/** A default run's options for an update with `loss` (its learning rate, GRPO and AdamW settings), with a test's overrides. */
export function trainStepOptions(loss: TrainStepOptions['loss'], overrides: Partial<TrainStepOptions> = {}): TrainStepOptions {
  return { loss, learningRate: loss === 'sft' ? RUN.sft.learningRate : RUN.optimizer.learningRate, ...trainStepOptionsOf(RUN), ...overrides };
}

/** A `track` that remembers each engine it is given and releases them all after the file's tests. */
export function releasedAfterAll(): (engine: PolicyEngine) => PolicyEngine {
  const engines: PolicyEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.release();
  });
  return (engine) => {
    engines.push(engine);
    return engine;
  };
}

/** `n` token ids below `vocab`, drawn from the keyed generator under (purpose, key). */
export const randomIds = (purpose: string, key: string, n: number, vocab: number): number[] => Array.from({ length: n }, (_, i) => Math.floor(uniform([purpose, key, i]) * vocab));

/** One update through `train` (the engine has no one-step method): in-process or on an engine thread. */
export async function trainStep(engine: Pick<EngineApi | RemoteEngineApi, 'train'>, sequences: readonly TrainSequence[], options: TrainStepOptions, opts: TrainOptions = {}): Promise<TrainStepResult> {
  const [result] = await engine.train([{ sequences, options }], opts);
  return result!;
}

/**
 * Scores against the slow reference forward pass (test/reference/llama-forward.ts): each result's
 * length and ranks must equal the reference's; returns the largest log-prob gap, for the test's bound.
 */
export function worstGapToReference(config: ModelConfig, params: ParamTensors, requests: readonly ScoreRequest[], results: readonly ScoreResult[]): number {
  let worst = 0;
  requests.forEach((r, i) => {
    const ref = referenceLogprobsAndRanks(config, params, r.ids, r.targetStart);
    expect(results[i]!.logprobs.length, `request ${i}: log-probs`).toBe(r.ids.length - r.targetStart);
    results[i]!.logprobs.forEach((lp, t) => (worst = Math.max(worst, Math.abs(lp - ref.logprobs[t]!))));
    expect(results[i]!.ranks, `request ${i}: ranks`).toEqual(ref.ranks);
  });
  return worst;
}
