// Scoring with shared prefixes: which consecutive requests share one (a pure function, by hand-worked
// tables), and that scores after a prefix run once equal the slow reference forward pass and the same
// requests scored whole, for every attention layout, under LoRA, and across micro-batches.
import { describe, expect, it } from 'vitest';
import { uniform } from '../dro/random.js';
import { attentionVariants, engineOptions, randomIds, releasedAfterAll, tinyModelConfig, trainStep, trainStepOptions, worstGapToReference } from './testing/fixtures.js';
import { initParameters, parameterSpecs } from './model/params.js';
import { PolicyEngine } from './policy.js';
import { MIN_SHARED_PREFIX, sharedPrefixRuns, type ScoreRequest } from './scoring.js';

const track = releasedAfterAll();

describe('sharedPrefixRuns', () => {
  const ids = (prefix: number[], tail: number[]): number[] => [...prefix, ...tail];
  const p10 = Array.from({ length: 10 }, (_, i) => i + 1);
  const q10 = Array.from({ length: 10 }, (_, i) => 20 + i);
  const table: [string, ScoreRequest[], { start: number; end: number; prefix: number }[]][] = [
    ['a lone request is scored whole', [{ ids: ids(p10, [5]), targetStart: 10 }], [{ start: 0, end: 1, prefix: 0 }]],
    [
      'the chains of one prompt share it, the next prompt starts a run',
      [{ ids: ids(p10, [50, 51]), targetStart: 11 }, { ids: ids(p10, [60]), targetStart: 10 }, { ids: ids(q10, [70]), targetStart: 10 }, { ids: ids(q10, [71, 72]), targetStart: 11 }],
      [{ start: 0, end: 2, prefix: 9 }, { start: 2, end: 4, prefix: 9 }],
    ],
    // The prefix stops one short of the earliest target: the position that predicts it stays in the row's own part.
    ['capped below every targetStart', [{ ids: ids(p10, [1, 2]), targetStart: 12 }, { ids: ids(p10, [1, 3]), targetStart: 11 }], [{ start: 0, end: 2, prefix: 10 }]],
    ['shorter than the minimum: scored whole', [{ ids: [1, 2, 3, 9], targetStart: 3 }, { ids: [1, 2, 3, 8], targetStart: 3 }], [{ start: 0, end: 1, prefix: 0 }, { start: 1, end: 2, prefix: 0 }]],
    // Two chains that also share their first two tokens, then a third: 2 × 10 ≥ 1 × 12 tokens saved, so the run keeps it at 10.
    [
      'a run shrinks its prefix when a longer run saves more',
      [{ ids: ids(p10, [4, 4, 1]), targetStart: 13 }, { ids: ids(p10, [4, 4, 2]), targetStart: 13 }, { ids: ids(p10, [7, 7]), targetStart: 12 }],
      [{ start: 0, end: 3, prefix: 10 }],
    ],
    // Eight chains sharing 10 tokens save 7 × 10 = 70; a ninth sharing 8 would save 8 × 8 = 64: it starts its own run.
    [
      'a run does not shrink to take in a request that saves less',
      [...Array.from({ length: 8 }, (_, i) => ({ ids: ids(p10, [40 + i]), targetStart: 11 })), { ids: [...p10.slice(0, 8), 99, 98, 97], targetStart: 10 }],
      [{ start: 0, end: 8, prefix: 10 }, { start: 8, end: 9, prefix: 0 }],
    ],
  ];
  for (const [name, requests, expected] of table) it(name, () => expect(sharedPrefixRuns(requests)).toEqual(expected));

  it('never shares fewer than the minimum', () => {
    expect(MIN_SHARED_PREFIX).toBe(8);
    const requests = Array.from({ length: 6 }, (_, i) => ({ ids: [1, 2, 3, 4, 5, 6, 7, i, 9, 9], targetStart: 9 }));
    expect(sharedPrefixRuns(requests).every((r) => r.prefix === 0)).toBe(true);
  });
});

/** Two prompts with three and four chains each (targets after the prompt), and one request of its own. */
function groupedRequests(vocab: number): ScoreRequest[] {
  const prompt = (key: string, n: number): number[] => randomIds('prompt', key, n, vocab);
  const chain = (key: string, n: number): number[] => randomIds('chain', key, n, vocab);
  const a = prompt('a', 14);
  const b = prompt('b', 11);
  return [
    ...[5, 9, 2].map((n, i) => ({ ids: [...a, ...chain(`a${i}`, n)], targetStart: a.length + 1 + (i % 2) })),
    ...[7, 3, 12, 6].map((n, i) => ({ ids: [...b, ...chain(`b${i}`, n)], targetStart: b.length + (i % 3) })),
    { ids: chain('alone', 15), targetStart: 4 },
  ];
}

describe('scores after a shared prefix', () => {
  for (const [name, config] of attentionVariants()) {
    it(`${name}: equal the slow reference (1e-4) and the requests scored whole (float64, 1e-12)`, async () => {
      const params = initParameters(config, 11);
      for (const spec of parameterSpecs(config)) {
        if (!spec.name.endsWith('.bias')) continue;
        const p = params.get(spec.name)!;
        for (let i = 0; i < p.length; i++) p[i] = 0.5 * (uniform(['bias', spec.name, i]) - 0.5);
      }
      const requests = groupedRequests(config.vocab_size);
      const runs = sharedPrefixRuns(requests);
      expect(runs.map((r) => r.prefix)).toEqual([14, 10, 0]);
      const engine = track(PolicyEngine.fromParameters(config, params, engineOptions()));
      const shared = await engine.score(requests);
      const worst = worstGapToReference(config, params, requests, shared);
      expect(worst).toBeLessThanOrEqual(1e-4);

      const exact = track(PolicyEngine.fromParameters(config, params, engineOptions({ dtype: 'float64' })));
      const together = await exact.score(requests);
      // Alone, a request is a run of one: scored whole, by the plain graph.
      const alone = await Promise.all(requests.map(async (r) => (await exact.score([r]))[0]!));
      let gap = 0;
      together.forEach((s, i) => s.logprobs.forEach((lp, t) => (gap = Math.max(gap, Math.abs(lp - alone[i]!.logprobs[t]!)))));
      console.log(`${name}: max |engine − reference| ${worst.toExponential(2)} (float32); shared prefix vs whole ${gap.toExponential(2)} (float64)`);
      expect(gap).toBeLessThanOrEqual(1e-12);
      expect(together.map((s) => s.ranks)).toEqual(alone.map((s) => s.ranks));
      // Every request after a shared prefix, none whole, with and without a budget.
      const grouped = requests.slice(0, -1);
      for (const options of [{}, { microBatchTokens: 30 }]) {
        const scored = await exact.score(grouped, options);
        scored.forEach((s, i) => s.logprobs.forEach((lp, t) => expect(Math.abs(lp - together[i]!.logprobs[t]!)).toBeLessThanOrEqual(1e-12)));
      }
    });
  }

  it('under LoRA, through the adapters, and split over micro-batches (float64)', async () => {
    const config = tinyModelConfig();
    const params = initParameters(config, 4);
    const engine = track(PolicyEngine.fromParameters(config, params, engineOptions({ dtype: 'float64', lora: { rank: 2, alpha: 4, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 6 } })));
    // One SFT step makes B nonzero, so the adapters change the scores (a fresh adapter's B is zero).
    await trainStep(engine, [0, 1, 2].map((i) => ({ ids: randomIds('sft', `s${i}`, 12, config.vocab_size), completionStart: 2 })), trainStepOptions('sft', { learningRate: 0.05, microBatchTokens: 1000 }));
    const requests = groupedRequests(config.vocab_size);
    const together = await engine.score(requests);
    // 40 tokens: each prompt's chains span several micro-batches (prefix + longest tail per row).
    const split = await engine.score(requests, { microBatchTokens: 40 });
    const alone = await Promise.all(requests.map(async (r) => (await engine.score([r]))[0]!));
    const base = track(PolicyEngine.fromParameters(config, params, engineOptions({ dtype: 'float64' })));
    const unadapted = await base.score(requests);
    let gap = 0;
    let moved = 0;
    together.forEach((s, i) =>
      s.logprobs.forEach((lp, t) => {
        gap = Math.max(gap, Math.abs(lp - alone[i]!.logprobs[t]!), Math.abs(split[i]!.logprobs[t]! - alone[i]!.logprobs[t]!));
        moved = Math.max(moved, Math.abs(lp - unadapted[i]!.logprobs[t]!));
      }),
    );
    expect(moved).toBeGreaterThan(1e-3);
    expect(gap).toBeLessThanOrEqual(1e-12);
  });
});
