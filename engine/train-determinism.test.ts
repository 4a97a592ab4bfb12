// A GRPO step on a batch big enough for ONNX Runtime to spread kernels over threads (64 sequences,
// up to 128 completion tokens) is repeatable on fresh engines and equal with 1 and 2 intra-op threads.
// It was not, while the embedding gradient was a ScatterND add (threads lost repeated rows' updates).
import { expect, it } from 'vitest';
import { DEFAULT_INIT_MODEL } from '../dro/config.js';
import { uniform } from '../dro/random.js';
import { parseModelConfig } from './model/config.js';
import { PolicyEngine } from './policy.js';
import { engineOptions, trainStep, trainStepOptions } from './testing/fixtures.js';

const config = parseModelConfig({ model_type: 'llama', ...DEFAULT_INIT_MODEL }, 'default init model');

async function gradientStep(threads: number): Promise<{ gradNorm: number; parameters: Uint8Array }> {
  const engine = PolicyEngine.initialise(config, 1, engineOptions({ intraOpThreads: threads }));
  try {
    const sequences = Array.from({ length: 64 }, (_, b) => {
      const prompt = 20 + Math.floor(uniform(['det-prompt', b]) * 40);
      const completion = 10 + Math.floor(uniform(['det-completion', b]) * 118);
      const ids = Array.from({ length: prompt + completion }, (_, t) => Math.floor(uniform(['det-id', b, t]) * 256));
      return { ids, completionStart: prompt, advantage: uniform(['det-advantage', b]) - 0.5 };
    });
    const old = await engine.score(sequences.map((s) => ({ ids: s.ids, targetStart: s.completionStart })));
    const full = sequences.map((s, i) => ({ ...s, oldLogprobs: old[i]!.logprobs, referencePolicyLogprobs: old[i]!.logprobs }));
    const result = await trainStep(engine, full, trainStepOptions('grpo', { learningRate: 1e-3, maxCompletionLength: 128 }));
    return { gradNorm: result.gradNorm, parameters: engine.exportParameters() };
  } finally {
    await engine.release();
  }
}

it('repeats bit for bit on fresh engines with 2 threads, and agrees with 1 thread', async () => {
  const a = await gradientStep(2);
  const b = await gradientStep(2);
  const c = await gradientStep(2);
  expect(b.gradNorm).toBe(a.gradNorm);
  expect(c.gradNorm).toBe(a.gradNorm);
  expect(Buffer.compare(b.parameters, a.parameters)).toBe(0);
  expect(Buffer.compare(c.parameters, a.parameters)).toBe(0);
  const single = await gradientStep(1);
  expect(Math.abs(single.gradNorm - a.gradNorm) / a.gradNorm).toBeLessThan(1e-5);
});
