// The engine thread: same results as the in-process engine, a main event loop that keeps running during
// long generations, prompt cancellation, the engine's error classes on this side, the state contract
// (tags, loads, reference, all-or-nothing training) through messages, and clear errors when the thread
// cannot start or dies.
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { parseModelConfig } from '../model/config.js';
import { EngineAbortError, EngineInputError, EngineThreadError, NonFiniteUpdateError, PolicyTagMismatchError, type PolicyTag } from '../errors.js';
import type { GenerateRequest } from '../generation.js';
import { PolicyEngine } from '../policy.js';
import type { TrainSequence } from '../training.js';
import { CrashableEngineClient } from '../testing/crashable-client.js';
import { engineOptions, samplingOptions, trainStep, trainStepOptions } from '../testing/fixtures.js';
import { EngineClient } from './engine-client.js';

const small = parseModelConfig({ vocab_size: 50, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 }, 'thread test');
// Big enough that a generation takes seconds on two cores.
const slow = parseModelConfig({ vocab_size: 260, hidden_size: 256, intermediate_size: 704, num_hidden_layers: 6, num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 1024 }, 'slow thread test');

// One intra-op thread, so the main thread keeps a core of two: the responsiveness test measures its event loop.
const options = engineOptions({ intraOpThreads: 1 });
const clients: EngineClient[] = [];
async function start(config = small, seed = 1): Promise<EngineClient> {
  const c = await EngineClient.start({ kind: 'init', config, seed }, options);
  clients.push(c);
  return c;
}
afterAll(async () => {
  for (const c of clients) await c.dispose();
});

const requests = (n: number, length = 5): GenerateRequest[] =>
  Array.from({ length: n }, (_, i) => ({ promptIds: Array.from({ length: length + (i % 3) }, (_, t) => (i * 7 + t * 3) % 50), key: { seed: 1, step: 0, exampleId: `e${i}`, sampleIndex: 0 } }));

describe('engine thread', () => {
  it('gives the same results as the engine in the calling thread, and trains and exports through messages', async () => {
    const client = await start();
    const local = PolicyEngine.initialise(small, 1, options);
    const sampling = samplingOptions({ temperature: 1, maxNewTokens: 6 });
    expect(await client.generate(requests(3), sampling)).toEqual(await local.generate(requests(3), sampling));
    const scoreRequest = [{ ids: [1, 2, 3, 4], targetStart: 1 }];
    expect(await client.score(scoreRequest)).toEqual(await local.score(scoreRequest));
    const batch = [{ ids: [1, 2, 3, 4, 5], completionStart: 2 }];
    const trained = await trainStep(client, batch, trainStepOptions('sft', { learningRate: 1e-2 }));
    expect(trained).toEqual(await trainStep(local, batch, trainStepOptions('sft', { learningRate: 1e-2 })));
    expect(trained.step).toBe(1);
    const exported = await client.exportParameters();
    expect(Buffer.from(exported).equals(Buffer.from(local.exportParameters()))).toBe(true);
    const other = await start(small, 9);
    const optimizer = await client.exportOptimizer();
    const optimizerDigest = digest(optimizer);
    await other.loadState({ parameters: exported, optimizer, reference: null, tag: tag(1) });
    expect(digest(await other.exportOptimizer())).toBe(optimizerDigest);
    expect(await other.score(scoreRequest)).toEqual(await client.score(scoreRequest));
    await local.release();
  });

  it('keeps the main event loop responsive during a multi-second generation', async () => {
    const client = await start(slow, 2);
    let ticks = 0;
    let longestGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      ticks++;
    }, 10);
    const started = performance.now();
    let progress = 0;
    await client.generate(requests(4, 16), samplingOptions({ temperature: 1, maxNewTokens: 300 }), { onProgress: (n) => (progress = n) });
    clearInterval(timer);
    const seconds = (performance.now() - started) / 1000;
    console.log(`generation took ${seconds.toFixed(1)} s; ${ticks} timer ticks, longest gap ${longestGap.toFixed(1)} ms; progress reached ${progress}`);
    expect(progress).toBe(4 * 300);
    expect(ticks).toBeGreaterThan(20);
    expect(longestGap).toBeLessThan(100);
  });

  it('cancels a long generation within a second and stays usable', async () => {
    const client = await start(slow, 3);
    const controller = new AbortController();
    let abortedAt = 0;
    const run = client.generate(requests(4, 16), samplingOptions({ temperature: 1, maxNewTokens: 600 }), {
      signal: controller.signal,
      onProgress: (n) => {
        if (n >= 40 && !controller.signal.aborted) {
          abortedAt = performance.now();
          controller.abort(new Error('user cancelled'));
        }
      },
    });
    await expect(run).rejects.toThrow(new EngineAbortError('user cancelled'));
    const latency = performance.now() - abortedAt;
    console.log(`cancellation returned ${latency.toFixed(0)} ms after the abort`);
    expect(latency).toBeLessThan(1000);
    const after = await client.generate(requests(1), samplingOptions({ temperature: 0, maxNewTokens: 3 }));
    expect(after[0]!.ids).toHaveLength(3);
  });

  it('rejects every pending and later call with a clear error when the thread dies', async () => {
    const client = await CrashableEngineClient.startCrashable({ kind: 'init', config: slow, seed: 4 }, options);
    clients.push(client);
    let crashed = false;
    const pending = client.generate(requests(2, 16), samplingOptions({ maxNewTokens: 500 }), {
      onProgress: (n) => {
        if (n >= 10 && !crashed) {
          crashed = true;
          client.crash(70);
        }
      },
    });
    await expect(pending).rejects.toThrow(EngineThreadError);
    await expect(pending).rejects.toThrow('engine thread exited (code 70)');
    await expect(client.score([{ ids: [1, 2], targetStart: 1 }])).rejects.toThrow('engine thread exited (code 70)');
  });

  it('reports a model that cannot be loaded', async () => {
    await expect(EngineClient.start({ kind: 'path', path: '/nonexistent/model' }, options)).rejects.toThrow('engine thread could not start: cannot read /nonexistent/model/config.json');
  });

  it('passes engine errors back as the same classes, with their message', async () => {
    const client = await start();
    await expect(client.score([{ ids: [1, 999], targetStart: 1 }])).rejects.toThrow(new EngineInputError('token id 999 at sequence 0, position 1 is outside the vocabulary (0..49)'));
    await expect(client.generate([{ promptIds: [], key: { seed: 1, step: 0, exampleId: 'e', sampleIndex: 0 } }], samplingOptions())).rejects.toThrow(new EngineInputError('generate request 0: the prompt is empty'));
    await expect(client.loadState({ parameters: new Uint8Array(3), optimizer: null, reference: null, tag: tag(0) })).rejects.toThrow(EngineInputError);
    const aborted = AbortSignal.abort(new Error('gave up'));
    await expect(client.score([{ ids: [1, 2], targetStart: 1 }], { signal: aborted })).rejects.toThrow(new EngineAbortError('gave up'));
    expect((await client.score([{ ids: [1, 2], targetStart: 1 }]))[0]!.ranks).toHaveLength(1);
  });
});

const tag = (step: number): PolicyTag => ({ runId: 'thread-run', configHash: 'abc123', step });
const sftBatch = (key: number): TrainSequence[] => [{ ids: [1, 2, 3, 4, 5, 6].map((t) => (t * 7 + key) % 50), completionStart: 2 }];
const sft = trainStepOptions('sft', { learningRate: 1e-2 });

/** The exported state files, as digests: comparing megabytes with toEqual would print megabytes on a mismatch. */
async function exported(client: EngineClient): Promise<string[]> {
  return [await client.exportParameters(), await client.exportOptimizer(), await client.exportReferencePolicy()].map(digest);
}
const digest = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('engine thread: the state contract', () => {
  it('tags, loads, freezes, resets and trains like the in-process engine', async () => {
    const client = await start(small, 3);
    const local = PolicyEngine.initialise(small, 3, options);
    expect(await client.tag()).toBeUndefined();
    await client.setTag(tag(0));
    expect(await client.tag()).toEqual(tag(0));

    const steps = [0, 1, 2].map((k) => ({ sequences: sftBatch(k), options: sft }));
    expect(await client.train(steps, { expect: tag(0), next: tag(1) })).toEqual(await local.train(steps));
    expect(await client.tag()).toEqual(tag(1));
    await client.freezeReferencePolicy();
    local.freezeReferencePolicy();
    await trainStep(client, sftBatch(3), sft);
    await trainStep(local, sftBatch(3), sft);
    const probe = [{ ids: [3, 1, 4, 1, 5], targetStart: 1 }];
    expect(await client.score(probe, { policy: 'reference' })).toEqual(await local.score(probe, { policy: 'reference' }));
    expect(await client.score(probe)).toEqual(await local.score(probe));
    expect(await exported(client)).toEqual([local.exportParameters(), local.exportOptimizer(), local.exportReferencePolicy()].map(digest));

    // A whole state moves to another thread; whole buffers are transferred, not copied.
    const other = await start(small, 11);
    const files = { parameters: local.exportParameters(), optimizer: local.exportOptimizer(), reference: local.exportReferencePolicy(), tag: tag(4) };
    await other.loadState(files);
    expect(files.parameters.byteLength).toBe(0);
    expect(await other.tag()).toEqual(tag(4));
    expect(await exported(other)).toEqual(await exported(client));

    await other.resetOptimizer();
    local.resetOptimizer();
    expect(digest(await other.exportOptimizer())).toBe(digest(local.exportOptimizer()));
    await local.release();
  });

  it('a tag mismatch, a non-finite update and a cancelled train arrive as their classes and change nothing', async () => {
    const client = await start(slow, 5);
    await client.setTag(tag(7));
    const before = await exported(client);

    const mismatch = (await client.train([{ sequences: sftBatch(1), options: sft }], { expect: tag(6), next: tag(7) }).catch((e: unknown) => e)) as PolicyTagMismatchError;
    expect(mismatch).toBeInstanceOf(PolicyTagMismatchError);
    expect([mismatch.expected, mismatch.actual]).toEqual([tag(6), tag(7)]);

    const nan: TrainSequence[] = [{ ids: [1, 2, 3, 4], completionStart: 2, advantage: Number.NaN, oldLogprobs: [-1, -1], referencePolicyLogprobs: [-1, -1] }];
    const nonFinite = (await trainStep(client, nan, trainStepOptions('grpo', { learningRate: 1e-3 }), { expect: tag(7), next: tag(8) }).catch((e: unknown) => e)) as NonFiniteUpdateError;
    expect(nonFinite).toBeInstanceOf(NonFiniteUpdateError);
    expect(nonFinite.message).toBe('update 1: loss is NaN; the weights were left unchanged');
    expect([nonFinite.update, nonFinite.quantity, nonFinite.value]).toEqual([1, 'loss', Number.NaN]);

    // Cancelled after the first of many updates: the thread stops at its next check and commits nothing.
    const controller = new AbortController();
    const longBatch: TrainSequence[] = Array.from({ length: 4 }, (_, b) => ({ ids: Array.from({ length: 64 }, (_, t) => (t * 13 + b * 7) % 260), completionStart: 8 }));
    let computed = 0;
    const run = client.train(
      Array.from({ length: 20 }, () => ({ sequences: longBatch, options: sft })),
      {
        signal: controller.signal,
        expect: tag(7),
        next: tag(8),
        onProgress: (n) => {
          computed = n;
          controller.abort(new Error('workflow cancelled'));
        },
      },
    );
    await expect(run).rejects.toThrow(new EngineAbortError('workflow cancelled'));
    console.log(`train cancelled after ${computed} of 20 updates were computed`);
    expect(computed).toBeLessThan(20);
    expect(await client.tag()).toEqual(tag(7));
    expect(await exported(client)).toEqual(before);
  });
});
