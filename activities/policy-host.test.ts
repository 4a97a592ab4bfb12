// A policy worker's admission of pins: beside the runs it hosts, a run must fit --max-runs, the memory
// budget and --threads, or the pin is refused as a retryable WorkerBusy (another worker takes it); a
// lone run is always taken (whether it fits at all is checked when it loads), and a release frees the place.
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../dro/config.js';
import { parseModelConfig } from '../engine/index.js';
import { runPeakBytes } from './memory-budget.js';
import { PolicyHost } from './policy-host.js';
import type { RunData } from './run-data.js';
import type { RunRef } from './types.js';

const MODEL = parseModelConfig({ vocab_size: 260, hidden_size: 128, intermediate_size: 344, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, tie_word_embeddings: true }, 'tiny');
// Admission reads only the model's config from the run's data.
const DATA = { modelConfig: MODEL } as RunData;
const run = (runId: string, threads = 2): RunRef => ({ runId, config: parseRunConfig({ model: { intraOpThreads: threads } }), configHash: 'h' });
const PEAK = runPeakBytes(run('x').config, MODEL, undefined);

function busy(host: PolicyHost, r: RunRef): ApplicationFailure {
  try {
    host.admit(r, DATA);
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error(`expected ${host.queue} to refuse ${r.runId}`);
}

describe('PolicyHost.admit', () => {
  it('takes runs up to --max-runs and refuses the next one, retryably, naming the limit; the same run again is no new run', () => {
    const host = new PolicyHost('q', { maxRuns: 2 });
    host.admit(run('a'), DATA);
    host.admit(run('b'), DATA);
    host.admit(run('a'), DATA);
    const err = busy(host, run('c'));
    expect(err.type).toBe('WorkerBusy');
    expect(err.nonRetryable).toBe(false);
    expect(err.message).toBe('policy worker q is busy: it hosts 2 run(s), its limit (--max-runs 2); the pin of run c goes to another worker');
    expect(host.hostedRuns).toBe(2);
  });

  it('refuses a run whose peak would pass the memory budget beside the others, but always takes a lone run', () => {
    const host = new PolicyHost('q', { memoryBytes: Math.floor(1.5 * PEAK) });
    host.admit(run('a'), DATA);
    expect(busy(host, run('b')).message).toMatch(/its runs plan .* GiB, and this one .* GiB more would pass its memory budget of .* GiB \(--memory\)/);
    const small = new PolicyHost('q', { memoryBytes: 1 });
    expect(() => small.admit(run('a'), DATA)).not.toThrow();
  });

  it('counts the runs\' intra-op threads against --threads', () => {
    const host = new PolicyHost('q', { threads: 3 });
    host.admit(run('a', 2), DATA);
    expect(busy(host, run('b', 2)).message).toMatch(/its runs use 2 intra-op threads, and this one's 2 would pass its 3 \(--threads\)/);
    host.admit(run('c', 1), DATA);
  });

  it('has room again once a run is released, and limits nothing but memory by default', async () => {
    const host = new PolicyHost('q', { maxRuns: 1 });
    host.admit(run('a'), DATA);
    busy(host, run('b'));
    await host.release('a');
    host.admit(run('b'), DATA);
    const open = new PolicyHost('q', { memoryBytes: 100 * PEAK });
    for (const id of ['a', 'b', 'c', 'd', 'e']) open.admit(run(id, 8), DATA);
    expect(open.hostedRuns).toBe(5);
  });
});
