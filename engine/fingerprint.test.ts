// The runtime fingerprint: dispatch features read from /proc/cpuinfo texts of both architectures, and the
// differences that can change results named one by one (a CPU model's name alone no longer decides).
import { describe, expect, it } from 'vitest';
import { dispatchFeatures, fingerprintDifferences, fingerprintId, type RuntimeFingerprint } from './fingerprint.js';

const AVX512_EPYC = 'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 ssse3 fma sse4_1 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni sha_ni\n';
const AVX2_EPYC = 'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx f16c avx2 sha_ni\n';
const GRAVITON = 'processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp sve i8mm bf16\n';

describe('dispatchFeatures', () => {
  it('keeps the flags MLAS dispatches on, in a fixed order, and drops the rest', () => {
    expect(dispatchFeatures(AVX512_EPYC, 'x64')).toEqual(['avx', 'fma', 'f16c', 'avx2', 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512_vnni', 'avx512_bf16']);
    expect(dispatchFeatures(AVX2_EPYC, 'x64')).toEqual(['avx', 'fma', 'f16c', 'avx2']);
    expect(dispatchFeatures(GRAVITON, 'arm64')).toEqual(['asimd', 'asimdhp', 'asimddp', 'i8mm', 'bf16', 'sve']);
  });

  it('is null where the text has no flags line or the architecture is unknown', () => {
    expect(dispatchFeatures('', 'x64')).toBeNull();
    expect(dispatchFeatures(AVX2_EPYC, 'riscv64')).toBeNull();
  });
});

describe('fingerprintDifferences', () => {
  const here: RuntimeFingerprint = { onnxruntimeVersion: '1.30.0', cpuModel: 'AMD EPYC', arch: 'x64', cpuFeatures: dispatchFeatures(AVX512_EPYC, 'x64'), intraOpThreads: 2, executionProvider: 'cpu' };

  it('finds nothing between equal fingerprints, and nothing in a CPU name alone when the features agree', () => {
    expect(fingerprintDifferences(here, here)).toEqual([]);
    expect(fingerprintDifferences({ ...here, cpuModel: 'AMD EPYC 9654' }, here)).toEqual([]);
  });

  it('tells an AVX2 machine from an AVX-512 one with the same model name', () => {
    const avx2 = { ...here, cpuFeatures: dispatchFeatures(AVX2_EPYC, 'x64') };
    const [note, ...rest] = fingerprintDifferences(avx2, here);
    expect(rest).toEqual([]);
    expect(note).toMatch(/instruction-set extensions differ \("AMD EPYC" with avx\+fma\+f16c\+avx2, here "AMD EPYC" with avx\+fma\+f16c\+avx2\+avx512f/);
  });

  it('compares an older record (no features) by the CPU name, and names every other difference', () => {
    const { arch: _arch, cpuFeatures: _features, ...old } = here;
    expect(fingerprintDifferences(old, here)).toEqual([]);
    const notes = fingerprintDifferences({ ...old, cpuModel: 'Intel Xeon', onnxruntimeVersion: '1.29.0', intraOpThreads: 4, executionProvider: 'webgpu' }, here);
    expect(notes).toEqual([
      'the CPU differs ("Intel Xeon", here "AMD EPYC")',
      'the ONNX Runtime version differs (1.29.0, here 1.30.0)',
      'the intra-op thread count differs (4, here 2)',
      'the execution provider differs (webgpu, here cpu)',
    ]);
    expect(fingerprintDifferences({ ...here, arch: 'arm64' }, here)).toEqual(['the CPU architecture differs (arm64, here x64)']);
  });

  it('reads as one line', () => {
    expect(fingerprintId(here)).toBe('x64 avx+fma+f16c+avx2+avx512f+avx512bw+avx512dq+avx512vl+avx512_vnni+avx512_bf16 · ONNX Runtime 1.30.0 · 2 threads · cpu');
    expect(fingerprintId({ ...here, cpuFeatures: null, intraOpThreads: 1 })).toBe('x64 "AMD EPYC" (features unknown) · ONNX Runtime 1.30.0 · 1 thread · cpu');
  });
});
