// A resume on another machine says so: runtimeNotes compares a checkpoint's recorded runtime with this one.
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../dro/config.js';
import { runtimeFingerprint } from '../engine/ort.js';
import { runtimeNotes } from './policy-state.js';

describe('runtimeNotes', () => {
  const config = parseRunConfig({ model: { intraOpThreads: 2 } });
  const here = runtimeFingerprint({ intraOpThreads: 2, executionProvider: 'cpu' });

  it('says nothing for the same runtime, or for an old checkpoint without the record', () => {
    expect(runtimeNotes(here, config)).toEqual([]);
    expect(runtimeNotes(undefined, config)).toEqual([]);
  });

  it('names each difference', () => {
    const notes = runtimeNotes({ ...here, cpuFeatures: ['avx'], onnxruntimeVersion: '0.0.1', intraOpThreads: 4 }, config);
    expect(notes).toHaveLength(3);
    expect(notes[0]).toMatch(/instruction-set extensions differ .*last bits/);
    expect(notes[1]).toMatch(/ONNX Runtime version differs \(0\.0\.1, here /);
    expect(notes[2]).toMatch(/intra-op thread count differs \(4, here 2\)/);
  });
});
