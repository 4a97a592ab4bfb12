// Train sessions: batches that differ only in length share one session when the caller fixes the
// completion budget (or the loss does not use it), and the session cache stays bounded.
import { afterAll, describe, expect, it } from 'vitest';
import { parseModelConfig } from './model/config.js';
import { engineOptions, trainStepOptions } from './testing/fixtures.js';
import { TrainSessions, trainGraphOptions, type TrainSequence, type TrainStepOptions } from './training.js';

const config = parseModelConfig({ vocab_size: 11, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 32 }, 'train session test config');
const batch = (completion: number): TrainSequence[] => [
  { ids: Array.from({ length: 2 + completion }, (_, i) => i % 11), completionStart: 2, advantage: 1, oldLogprobs: new Array<number>(completion).fill(-1), referencePolicyLogprobs: new Array<number>(completion).fill(-1) },
];
const key = (completion: number, options: TrainStepOptions): string => JSON.stringify(trainGraphOptions('float32', batch(completion), options));

describe('train graph options', () => {
  it('do not vary with batch length when the budget is fixed or unused', () => {
    const grpo = trainStepOptions('grpo', { learningRate: 1e-3, maxCompletionLength: 16 });
    const sft = trainStepOptions('sft', { learningRate: 1e-3 });
    expect(key(3, grpo)).toBe(key(9, grpo));
    expect(key(3, sft)).toBe(key(9, sft));
    expect(key(3, { ...grpo, aggregation: 'token-mean' })).toBe(key(9, { ...grpo, aggregation: 'token-mean' }));
    // Each Dr. GRPO budget is a graph of its own, and one below the longest completion is refused.
    expect(key(3, grpo)).not.toBe(key(3, { ...grpo, maxCompletionLength: 17 }));
    expect(() => key(9, { ...grpo, maxCompletionLength: 8 })).toThrow('maxCompletionLength 8 must be an integer of at least the longest completion (9 tokens)');
    // SFT ignores the GRPO fields altogether.
    expect(key(3, { ...sft, klBeta: 0.5, epsilonHigh: 0.3, aggregation: 'sequence-mean', maxCompletionLength: 1 })).toBe(key(3, sft));
  });
});

describe('train session cache', () => {
  const sessions = new TrainSessions(config, engineOptions(), 2);
  afterAll(() => sessions.release());

  it('reuses sessions by options and evicts the least recently used beyond its capacity', async () => {
    const options = (m: number) => trainGraphOptions('float32', batch(2), trainStepOptions('grpo', { learningRate: 1e-3, maxCompletionLength: m }));
    const a = await sessions.get(options(4));
    const b = await sessions.get(options(5));
    expect(await sessions.get(options(4))).toBe(a);
    await sessions.get(options(6)); // evicts 5, the least recently used
    expect(sessions.size).toBe(2);
    expect(await sessions.get(options(4))).toBe(a);
    expect(await sessions.get(options(5))).not.toBe(b);
    expect(sessions.size).toBe(2);
  });
});
