// A resume on another machine says so: runtimeNotes compares a checkpoint's recorded runtime with this one.
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../dro/config.js';
import { runtimeInfo } from '../engine/ort.js';
import { runtimeNotes } from './policy-state.js';

describe('runtimeNotes', () => {
  const config = parseRunConfig({ model: { intraOpThreads: 2 } });
  const here = { ...runtimeInfo(), intraOpThreads: 2, executionProvider: 'cpu' };

  it('says nothing for the same CPU, ONNX Runtime and thread count, or for an old checkpoint without the record', () => {
    expect(runtimeNotes(here, config)).toEqual([]);
    expect(runtimeNotes(undefined, config)).toEqual([]);
  });

  it('names each difference', () => {
    const notes = runtimeNotes({ ...here, cpuModel: 'Other CPU 9000', onnxruntimeVersion: '0.0.1', intraOpThreads: 4 }, config);
    expect(notes).toHaveLength(3);
    expect(notes[0]).toMatch(/CPU "Other CPU 9000".*last bits/);
    expect(notes[1]).toMatch(/ONNX Runtime 0\.0\.1, this worker has /);
    expect(notes[2]).toMatch(/4 intra-op threads, this run uses 2/);
  });
});
