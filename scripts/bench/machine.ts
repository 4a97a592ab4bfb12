// Measurements of this machine that the benchmarks compare themselves against (the float32 MatMul peak
// and the read bandwidth of ONNX Runtime) and the checks that keep their figures honest: whether
// anything else is using the CPUs, and medians instead of single or mean timings.
import { readFileSync } from 'node:fs';
import { Graph, OrtSession } from '../../engine/index.js';

export const secondsSince = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Busy and total jiffies (1/100 s on Linux) over all CPUs (the first line of /proc/stat); undefined where there is none. */
function cpuTimes(): { busy: number; total: number } | undefined {
  let line: string;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  } catch {
    return undefined;
  }
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

export interface Idleness {
  /** Share of all CPUs' time other processes kept busy, 0..1; null where unknown. */
  busyShare: number | null;
  idle: boolean;
}

/**
 * Whether the machine is idle: the CPUs' busy share over `ms`, less this process's own. A figure
 * taken while another process holds a core is about half the idle one (a static split over 2
 * threads waits for the slower), so the benchmarks say so instead of printing it as the truth.
 */
async function checkIdle(ms = 1000, threshold = 0.1): Promise<Idleness> {
  const before = cpuTimes();
  const ownBefore = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = cpuTimes();
  const own = process.cpuUsage(ownBefore);
  if (!before || !after || after.total === before.total) return { busyShare: null, idle: true };
  // This process's own threads (ONNX Runtime's pool winding down after a run) are not "something else".
  const ownJiffies = ((own.user + own.system) / 1e6) * 100;
  const busyShare = Math.max(0, after.busy - before.busy - ownJiffies) / (after.total - before.total);
  return { busyShare, idle: busyShare <= threshold };
}

/** Checks that the machine is idle and says on stderr when it is not, naming the moment (`before measuring`). */
export async function reportIdle(when: string, ms?: number): Promise<Idleness> {
  const i = await checkIdle(ms);
  if (!i.idle && i.busyShare !== null) {
    console.error(`warning: the machine was not idle ${when} (${(100 * i.busyShare).toFixed(0)}% of the CPUs busy): its figures are low; measure again when nothing else runs`);
  }
  return i;
}

/**
 * The float32 MatMul rate (FLOP/s) ONNX Runtime reaches on the shapes of a training step's linear
 * layers: 2,048 rows (batch 8 × 256) through 512 → 1376 → 512, eight GEMMs chained in one run, so
 * feeding the inputs and fetching the (scalar) output cost nothing next to them. The weights are
 * inputs, as in training, so ONNX Runtime cannot prepack them. Median of `runs` after two warm-ups.
 */
export async function matmulPeak(threads: number, runs = 7): Promise<{ flops: number; shape: string }> {
  const [m, k, n] = [2048, 512, 1376];
  const g = new Graph('peak');
  let x = g.input('x', 'float32', [m, k]);
  const up = g.input('up', 'float32', [k, n]);
  const down = g.input('down', 'float32', [n, k]);
  for (let i = 0; i < 4; i++) x = g.matmul(g.matmul(x, up), down);
  g.output(g.reduceSum(x, [0, 1], false), 'sum');
  const session = await OrtSession.create(g.toModelBytes(), { intraOpThreads: threads });
  // Scaled so values stay near 1 through the chain: no overflow, and no denormals (which are slow).
  const fill = (size: number, fanIn: number, salt: number): Float32Array => Float32Array.from({ length: size }, (_, i) => ((((i + salt) * 7919) % 1000) / 1000 - 0.5) * (3.4 / Math.sqrt(fanIn)));
  const feeds = {
    x: { dtype: 'float32' as const, dims: [m, k], data: fill(m * k, 1, 1) },
    up: { dtype: 'float32' as const, dims: [k, n], data: fill(k * n, k, 2) },
    down: { dtype: 'float32' as const, dims: [n, k], data: fill(n * k, n, 3) },
  };
  const times: number[] = [];
  try {
    for (let i = 0; i < runs + 2; i++) {
      const start = process.hrtime.bigint();
      await session.run(feeds);
      if (i >= 2) times.push(secondsSince(start));
    }
  } finally {
    await session.release();
  }
  const flops = (8 * 2 * m * k * n) / median(times);
  return { flops, shape: `${m}×${k} · ${k}×${n} and ${m}×${n} · ${n}×${k}, 8 chained` };
}

/**
 * Read bandwidth in bytes/s as ONNX Runtime reaches it: a ReduceSum over a 512 MiB float32 input (fed in
 * place, so only the sum's reads count), median of 7 after a warm-up. Decoding reads every weight once per
 * step and writes almost nothing, so this, not a copy, is what bounds it.
 */
export async function readBandwidth(threads: number): Promise<number> {
  const n = 128 * 1024 * 1024;
  const g = new Graph('read');
  g.output(g.reduceSum(g.input('x', 'float32', [n]), [0], false), 'sum');
  const session = await OrtSession.create(g.toModelBytes(), { intraOpThreads: threads });
  const feeds = { x: { dtype: 'float32' as const, dims: [n], data: new Float32Array(n).fill(1) } };
  const times: number[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const start = process.hrtime.bigint();
      await session.run(feeds);
      if (i > 0) times.push(secondsSince(start));
    }
  } finally {
    await session.release();
  }
  return (4 * n) / median(times);
}
