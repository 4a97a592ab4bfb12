// Every operator's gradient rule against central finite differences, in float64 on ONNX Runtime, with
// shapes that exercise broadcasting (including symbolic dims).
import { describe, expect, it } from 'vitest';
import { uniform } from '../../dro/random.js';
import { OrtSession } from '../ort.js';
import { engineOptions } from '../testing/fixtures.js';
import { gradients } from './autodiff.js';
import { Graph, type Dim, type Tensor } from './graph.js';

interface InputSpec {
  /** Declared shape (may hold symbolic dims). */
  shape: Dim[];
  /** Actual shape fed at run time. */
  dims?: number[];
  /** Values drawn from [lo, hi). */
  range?: [number, number];
}

const size = (dims: number[]): number => dims.reduce((a, b) => a * b, 1);

function values(key: string, n: number, [lo, hi]: [number, number]): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => lo + (hi - lo) * uniform(['autodiff-test', key, i]));
}

/**
 * Builds loss = Σ y ⊙ R (R fixed random) for y = build(inputs), and compares the graph's gradient of
 * every input with central differences of the same session's loss. Returns the largest error seen.
 */
async function checkGradients(name: string, specs: InputSpec[], build: (g: Graph, xs: Tensor[]) => Tensor, outDims: number[]): Promise<number> {
  const g = new Graph(name);
  const xs = specs.map((s, i) => g.input(`x${i}`, 'float64', s.shape));
  const y = build(g, xs);
  const weights = g.constant(Array.from(values(`${name}-R`, size(outDims), [-1, 1])), 'float64', outDims);
  const weighted = g.mul(y, weights);
  const loss = weighted.rank === 0 ? weighted : g.reduceSum(weighted, weighted.shape.map((_, i) => i));
  const grads = gradients(g, loss, xs);
  g.output(loss, 'loss');
  grads.forEach((gr, i) => g.output(gr, `grad${i}`));
  const session = await OrtSession.create(g.toModelBytes(), engineOptions());
  const inputs = specs.map((s, i) => {
    const dims = s.dims ?? (s.shape as number[]);
    return values(`${name}-x${i}`, size(dims), s.range ?? [-2, 2]);
  });
  const feeds = (arrays: Float64Array[]) =>
    Object.fromEntries(arrays.map((data, i) => [`x${i}`, { dtype: 'float64' as const, dims: specs[i]!.dims ?? (specs[i]!.shape as number[]), data }]));
  const result = await session.run(feeds(inputs));
  const lossAt = async (arrays: Float64Array[]): Promise<number> => ((await session.run(feeds(arrays), ['loss'])).loss!.data as Float64Array)[0]!;
  const h = 1e-6;
  let worst = 0;
  for (let i = 0; i < inputs.length; i++) {
    const analytic = result[`grad${i}`]!.data as Float64Array;
    expect(analytic.length, `${name}: gradient ${i} size`).toBe(inputs[i]!.length);
    for (let k = 0; k < inputs[i]!.length; k++) {
      const plus = inputs.map((a) => a.slice());
      const minus = inputs.map((a) => a.slice());
      plus[i]![k]! += h;
      minus[i]![k]! -= h;
      const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * h);
      const error = Math.abs(analytic[k]! - numeric) / (1 + Math.abs(numeric));
      worst = Math.max(worst, error);
      expect(error, `${name}: d loss / d x${i}[${k}] analytic ${analytic[k]} numeric ${numeric}`).toBeLessThan(1e-6);
    }
  }
  await session.release();
  return worst;
}

const cases: [string, InputSpec[], (g: Graph, xs: Tensor[]) => Tensor, number[]][] = [
  ['Add same shape', [{ shape: [2, 3] }, { shape: [2, 3] }], (g, [a, b]) => g.add(a!, b!), [2, 3]],
  ['Add broadcast trailing', [{ shape: [2, 3] }, { shape: [3] }], (g, [a, b]) => g.add(a!, b!), [2, 3]],
  ['Sub broadcast both ways', [{ shape: [2, 1, 4] }, { shape: [3, 1] }], (g, [a, b]) => g.sub(a!, b!), [2, 3, 4]],
  ['Mul broadcast leading', [{ shape: [4] }, { shape: [2, 3, 4] }], (g, [a, b]) => g.mul(a!, b!), [2, 3, 4]],
  ['Div broadcast', [{ shape: [2, 3] }, { shape: [2, 1], range: [0.5, 2] }], (g, [a, b]) => g.div(a!, b!), [2, 3]],
  ['Mul by a constant', [{ shape: [3] }], (g, [a]) => g.mul(a!, 2.5), [3]],
  ['Neg', [{ shape: [2, 2] }], (g, [a]) => g.neg(a!), [2, 2]],
  ['Pow 3', [{ shape: [5] }], (g, [a]) => g.pow(a!, 3), [5]],
  ['Pow -0.5', [{ shape: [5], range: [0.5, 3] }], (g, [a]) => g.pow(a!, -0.5), [5]],
  ['Sqrt', [{ shape: [4], range: [0.3, 3] }], (g, [a]) => g.sqrt(a!), [4]],
  ['Exp', [{ shape: [4] }], (g, [a]) => g.exp(a!), [4]],
  ['Log', [{ shape: [4], range: [0.3, 3] }], (g, [a]) => g.log(a!), [4]],
  ['Abs', [{ shape: [6], range: [0.2, 2] }], (g, [a]) => g.abs(g.sub(a!, 1.1)), [6]],
  ['Sigmoid', [{ shape: [2, 3] }], (g, [a]) => g.sigmoid(a!), [2, 3]],
  ['Identity', [{ shape: [3] }], (g, [a]) => g.identity(a!), [3]],
  ['Min broadcast', [{ shape: [2, 3] }, { shape: [3] }], (g, [a, b]) => g.min(a!, b!), [2, 3]],
  ['Max broadcast', [{ shape: [2, 3] }, { shape: [1, 3] }], (g, [a, b]) => g.max(a!, b!), [2, 3]],
  ['Clip', [{ shape: [8] }], (g, [a]) => g.clip(a!, -0.77, 0.83), [8]],
  ['Where broadcast', [{ shape: [2, 3] }, { shape: [3] }], (g, [a, b]) => g.where(g.greater(a!, g.scalar(0.1, a!)), a!, b!), [2, 3]],
  ['MatMul 2-D', [{ shape: [3, 4] }, { shape: [4, 2] }], (g, [a, b]) => g.matmul(a!, b!), [3, 2]],
  ['MatMul batched × 2-D', [{ shape: [2, 3, 4] }, { shape: [4, 5] }], (g, [a, b]) => g.matmul(a!, b!), [2, 3, 5]],
  ['MatMul symbolic rows × transposed weight', [{ shape: ['b', 's', 4], dims: [2, 3, 4] }, { shape: [5, 4] }], (g, [a, w]) => g.matmul(a!, g.transpose(w!, [1, 0])), [2, 3, 5]],
  ['MatMul broadcast batch', [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }], (g, [a, b]) => g.matmul(a!, b!), [2, 3, 3, 2]],
  ['ReduceSum keepdims', [{ shape: [2, 3, 4] }], (g, [a]) => g.reduceSum(a!, [1], true), [2, 1, 4]],
  ['ReduceSum two axes', [{ shape: [2, 3, 4] }], (g, [a]) => g.reduceSum(a!, [0, 2]), [3]],
  ['ReduceMean', [{ shape: [2, 3, 4] }], (g, [a]) => g.reduceMean(a!, [-1]), [2, 3]],
  ['ReduceMean over a symbolic dim', [{ shape: ['n', 3], dims: [4, 3] }], (g, [a]) => g.reduceMean(a!, [0], true), [1, 3]],
  ['ReduceMax', [{ shape: [3, 4] }], (g, [a]) => g.reduceMax(a!, [1]), [3]],
  ['Softmax last axis', [{ shape: [2, 5] }], (g, [a]) => g.softmax(a!, -1), [2, 5]],
  ['Softmax axis 0', [{ shape: [3, 2] }], (g, [a]) => g.softmax(a!, 0), [3, 2]],
  ['LogSoftmax', [{ shape: [2, 4] }], (g, [a]) => g.logSoftmax(a!, -1), [2, 4]],
  [
    'Gather rows with repeats',
    [{ shape: [5, 3] }],
    (g, [a]) => g.gather(a!, g.constant([0, 2, 2, 4, 0, 0], 'int64', [2, 3])),
    [2, 3, 3],
  ],
  [
    'GatherElements last axis',
    [{ shape: [2, 4] }],
    (g, [a]) => g.gatherElements(a!, g.constant([3, 0, 0, 1, 1, 2], 'int64', [2, 3]), -1),
    [2, 3],
  ],
  ['Reshape', [{ shape: [2, 6] }], (g, [a]) => g.reshape(a!, [3, 4]), [3, 4]],
  ['Reshape keeping a symbolic dim', [{ shape: ['b', 6], dims: [2, 6] }], (g, [a]) => g.reshape(a!, ['b', 2, 3]), [2, 2, 3]],
  ['Unsqueeze', [{ shape: [2, 3] }], (g, [a]) => g.unsqueeze(a!, [1]), [2, 1, 3]],
  ['Transpose', [{ shape: [2, 3, 4] }], (g, [a]) => g.transpose(a!, [2, 0, 1]), [4, 2, 3]],
  ['Expand', [{ shape: [3, 1] }, { shape: [2, 3, 4] }], (g, [a, b]) => g.mul(g.expandLike(a!, b!), b!), [2, 3, 4]],
  ['Slice to the end', [{ shape: [2, 5] }], (g, [a]) => g.slice(a!, 1, 2, Infinity), [2, 3]],
  ['Slice with a negative end', [{ shape: [4, 3] }], (g, [a]) => g.slice(a!, 0, 1, -1), [2, 3]],
  ['Slice a middle piece', [{ shape: [2, 6] }], (g, [a]) => g.slice(a!, -1, 1, 4), [2, 3]],
  ['Slice a symbolic axis', [{ shape: ['t', 2], dims: [5, 2] }], (g, [a]) => g.slice(a!, 0, 1, -2), [2, 2]],
  [
    'Slice over a range computed at run time',
    [{ shape: ['t', 2], dims: [5, 2] }],
    (g, [a]) => g.sliceRange(a!, 0, g.constant([1], 'int64'), g.sub(g.sizeOf(a!, 0), g.constant([1], 'int64')), 'inner'),
    [3, 2],
  ],
  [
    // Tanh has no rule: the walk must take the custom gradient's word for it and never reach the node.
    'Custom gradient over a node without a rule',
    [{ shape: [2, 3] }],
    (g, [a]) => {
      const tanh = g.node('Tanh', [a!], [{ dtype: a!.dtype, shape: [...a!.shape] }])[0]!;
      return g.withGradient(tanh, [a!], (g, grad) => [g.mul(grad, g.sub(1, g.mul(tanh, tanh)))]);
    },
    [2, 3],
  ],
  ['Slice an empty run-time range', [{ shape: [4, 2] }], (g, [a]) => g.add(g.reduceSum(g.sliceRange(a!, 0, g.constant([2], 'int64'), g.constant([2], 'int64'), 'none'), [0], true), a!), [4, 2]],
  ['Concat', [{ shape: [2, 1] }, { shape: [2, 3] }], (g, [a, b]) => g.concat([a!, b!], 1), [2, 4]],
  [
    'A composite: log-sum-exp with a shared input',
    [{ shape: [3, 4] }],
    (g, [a]) => {
      const m = g.reduceMax(a!, [1], true);
      return g.add(g.log(g.reduceSum(g.exp(g.sub(a!, m)), [1], true)), m);
    },
    [3, 1],
  ],
];

describe('gradient rules vs central finite differences (float64)', () => {
  for (const [name, specs, build, outDims] of cases) {
    it(name, async () => {
      const worst = await checkGradients(name, specs, build, outDims);
      expect(worst).toBeLessThan(1e-6);
    });
  }

  it('elementwise rules on random broadcasting shapes', async () => {
    // Draw an output shape of rank 1-3 with dims 2-3, then derive each operand by dropping leading axes
    // and turning random axes into 1: every broadcasting pattern NumPy allows shows up across trials.
    const ops: [string, (g: Graph, a: Tensor, b: Tensor) => Tensor, [number, number]][] = [
      ['Add', (g, a, b) => g.add(a, b), [-2, 2]],
      ['Sub', (g, a, b) => g.sub(a, b), [-2, 2]],
      ['Mul', (g, a, b) => g.mul(a, b), [-2, 2]],
      ['Div', (g, a, b) => g.div(a, b), [0.5, 2]],
      ['Max', (g, a, b) => g.max(a, b), [-2, 2]],
      ['Where', (g, a, b) => g.where(g.less(a, b), g.mul(a, a), b), [-2, 2]],
    ];
    let trials = 0;
    for (let trial = 0; trial < 18; trial++) {
      const r = (k: string): number => uniform(['shapes', trial, k]);
      const rank = 1 + Math.floor(r('rank') * 3);
      const out = Array.from({ length: rank }, (_, i) => 2 + Math.floor(r(`dim${i}`) * 2));
      const operand = (which: string): number[] => {
        const drop = Math.floor(r(`${which}-drop`) * rank);
        return out.slice(drop).map((d, i) => (r(`${which}-one${i}`) < 0.35 ? 1 : d));
      };
      const [name, build, range] = ops[trial % ops.length]!;
      const a = operand('a');
      const b = operand('b');
      const full = out.map((d, i) => {
        const ai = a[a.length - rank + i];
        const bi = b[b.length - rank + i];
        return (ai ?? 1) === 1 && (bi ?? 1) === 1 ? 1 : d;
      });
      await checkGradients(`${name} [${a.join(',')}] with [${b.join(',')}]`, [{ shape: a, range }, { shape: b, range }], (g, [x, y]) => build(g, x!, y!), full);
      trials++;
    }
    expect(trials).toBe(18);
  });

  it('a custom gradient replaces its nodes\' rules, and reaches only the tensors it names', async () => {
    const g = new Graph();
    const a = g.input('a', 'float64', [2]);
    const b = g.input('b', 'float64', [2]);
    // d(a·b)/da is b by the rules; the custom gradient says 7·grad, and says nothing of b.
    const loss = g.reduceSum(g.withGradient(g.mul(a, b), [a], (g, grad) => [g.mul(grad, 7)]), [0]);
    const [ga, gb] = gradients(g, loss, [a, b]);
    g.output(ga!, 'ga');
    g.output(gb!, 'gb');
    const session = await OrtSession.create(g.toModelBytes(), engineOptions());
    const out = await session.run({ a: { dtype: 'float64', dims: [2], data: Float64Array.from([1, -2]) }, b: { dtype: 'float64', dims: [2], data: Float64Array.from([3, 5]) } });
    expect(Array.from(out.ga!.data as Float64Array)).toEqual([7, 7]);
    expect(Array.from(out.gb!.data as Float64Array)).toEqual([0, 0]);
    await session.release();
  });

  it('gives zeros for a parameter the loss does not depend on', async () => {
    const g = new Graph();
    const a = g.input('a', 'float64', [2]);
    const b = g.input('b', 'float64', [3]);
    const loss = g.reduceSum(g.mul(a, a), [0]);
    const [ga, gb] = gradients(g, loss, [a, b]);
    g.output(ga!, 'ga');
    g.output(gb!, 'gb');
    const session = await OrtSession.create(g.toModelBytes(), engineOptions());
    const out = await session.run({ a: { dtype: 'float64', dims: [2], data: Float64Array.from([1, -2]) }, b: { dtype: 'float64', dims: [3], data: new Float64Array(3) } });
    expect(Array.from(out.ga!.data as Float64Array)).toEqual([2, -4]);
    expect(Array.from(out.gb!.data as Float64Array)).toEqual([0, 0, 0]);
  });

  it('refuses a non-scalar loss and an operator without a rule on the gradient path; one off it (a shape read) is fine', () => {
    const g = new Graph();
    const a = g.input('a', 'float64', [2]);
    expect(() => gradients(g, a, [a])).toThrow('the loss must be a scalar');
    // Pad has no rule: a loss through it cannot be differentiated.
    const padded = g.padAxis(a, 0, 1, 1, g.input('like', 'float64', [4]));
    expect(() => gradients(g, g.reduceSum(padded, [0]), [a])).toThrow('gradients: no gradient rule for Pad');
    // Shape has no rule either, but only integers flow from it: no gradient reaches it.
    const shape = g.cast(g.shapeOf(a), 'float64');
    expect(() => gradients(g, g.reduceSum(g.mul(shape, a), [0]), [a])).not.toThrow();
  });
});
