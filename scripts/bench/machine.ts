// Measurements of this machine that the benchmarks compare themselves against: the float32 MatMul peak
// of ONNX Runtime and the memory copy bandwidth.
import { Graph } from '../../engine/onnx/graph.js';
import { OrtSession } from '../../engine/ort.js';

export const secondsSince = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/** The best float32 MatMul rate (FLOP/s) over a few large shapes, with `threads` intra-op threads. */
export async function matmulPeak(threads: number): Promise<{ flops: number; shape: string }> {
  let best = { flops: 0, shape: '' };
  for (const [m, k, n] of [[1024, 1024, 1024], [2048, 1024, 2048], [4096, 512, 512], [2048, 512, 1376]] as const) {
    const g = new Graph('peak');
    g.output(g.matmul(g.input('a', 'float32', [m, k]), g.input('b', 'float32', [k, n])), 'c');
    const session = await OrtSession.create(g.toModelBytes(), { intraOpThreads: threads });
    const feeds = {
      a: { dtype: 'float32' as const, dims: [m, k], data: Float32Array.from({ length: m * k }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) },
      b: { dtype: 'float32' as const, dims: [k, n], data: Float32Array.from({ length: k * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5) },
    };
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const runs = 6;
    const start = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await session.run(feeds);
    await session.release();
    const flops = (2 * m * k * n * runs) / secondsSince(start);
    if (flops > best.flops) best = { flops, shape: `${m}×${k} · ${k}×${n}` };
  }
  return best;
}

/** Large-buffer copy bandwidth in bytes/s (a copy reads and writes: 2 × its size moved). */
export function copyBandwidth(): number {
  const n = 64 * 1024 * 1024;
  const a = new Float32Array(n).fill(1);
  const b = new Float32Array(n);
  b.set(a);
  const runs = 5;
  const start = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) b.set(a);
  return (2 * 4 * n * runs) / secondsSince(start);
}
