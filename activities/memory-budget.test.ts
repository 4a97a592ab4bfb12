// A run's plan against a policy worker's memory budget: refused before loading, naming the phase, the
// estimate and the fields that shrink it; 'auto' micro-batches shorter than the run's sequences refused.
import { ApplicationFailure } from '@temporalio/common';
import { totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../dro/config.js';
import { parseModelConfig } from '../engine/index.js';
import { checkRunMemory, defaultMemoryBudget, runMemoryEstimates } from './memory-budget.js';

const GiB = 1024 ** 3;
const SMOLLM2 = parseModelConfig({ vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, max_position_embeddings: 8192, tie_word_embeddings: true }, 'smollm2');

function refusal(fn: () => void): ApplicationFailure {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error('expected a refusal');
}

describe('checkRunMemory', () => {
  it('passes a SmolLM2 run of the default shape on 24 GiB and refuses it on 6, naming the update, its estimate and the fields', () => {
    const config = parseRunConfig({});
    expect(() => checkRunMemory(config, SMOLLM2, undefined, 24 * GiB, 'r1')).not.toThrow();
    const err = refusal(() => checkRunMemory(config, SMOLLM2, undefined, 6 * GiB, 'r1'));
    expect(err.type).toBe('InsufficientMemory');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toMatch(/^run r1: its update needs about \d+\.\d GiB \(process 0\.3 GiB, weights 0\.5 GiB, reference 0\.5 GiB, update 3\.3 GiB, accumulation 2\.0 GiB, activations \d+\.\d GiB\) for update\.microBatchTokens = auto \(2048\) tokens per micro-batch, sequences of up to 768 tokens, more than this policy worker's memory budget of 6\.0 GiB \(dro worker --memory\); lower update\.microBatchTokens, rollout\.maxNewTokens, model\.loraRank, or give the worker more memory$/);
  });

  it('names the phase that is over: a wide rollout batch refuses the rollout, naming its fields', () => {
    const config = parseRunConfig({ update: { microBatchTokens: 768 }, rollout: { batchSequences: 4096 } });
    const estimates = runMemoryEstimates(config, SMOLLM2, undefined);
    const rollout = estimates.find((p) => p.phase === 'rollout')!;
    const budget = rollout.estimate.bytes - 1;
    expect(Math.max(...estimates.filter((p) => p.phase !== 'rollout').map((p) => p.estimate.bytes))).toBeLessThan(budget);
    const err = refusal(() => checkRunMemory(config, SMOLLM2, undefined, budget, 'r2'));
    expect(err.message).toMatch(/its rollout needs about .* for rollout\.batchSequences = 4096 sequences of up to 768 tokens, .*; lower rollout\.batchSequences, rollout\.maxNewTokens, data\.maxPromptTokens, or give the worker more memory$/);
  });

  it('under LoRA, counts adapters as trained and does not suggest LoRA', () => {
    const config = parseRunConfig({ model: { loraRank: 8 } });
    const lora = { rank: 8, alpha: 16, targets: config.model.loraTargets, seed: 1 };
    const full = runMemoryEstimates(parseRunConfig({}), SMOLLM2, undefined).find((p) => p.phase === 'update')!;
    const adapters = runMemoryEstimates(config, SMOLLM2, lora).find((p) => p.phase === 'update')!;
    expect(adapters.estimate.bytes).toBeLessThan(full.estimate.bytes);
    expect(adapters.fields).not.toContain('model.loraRank');
  });

  it("refuses 'auto' micro-batches shorter than the longest trained sequence, as InvalidConfig naming the fix", () => {
    const config = parseRunConfig({ data: { maxPromptTokens: 2000 }, rollout: { maxNewTokens: 1000 } });
    const err = refusal(() => checkRunMemory(config, SMOLLM2, undefined, 1024 * GiB, 'r3'));
    expect(err.type).toBe('InvalidConfig');
    expect(err.message).toBe('run r3: update.microBatchTokens = auto gives 2048 tokens for this model, less than the longest sequence an update may train (data.maxPromptTokens + rollout.maxNewTokens = 3000); set update.microBatchTokens to at least 3000');
  });

  it('defaults to most of the memory this process may use', () => {
    expect(defaultMemoryBudget()).toBeGreaterThan(0);
    expect(defaultMemoryBudget()).toBeLessThan(Math.min(...[process.constrainedMemory(), totalmem()].filter((m) => m > 0)));
  });
});
