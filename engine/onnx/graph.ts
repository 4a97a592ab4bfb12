// A small typed ONNX graph builder: symbolic tensors with (possibly symbolic) shapes, the operators a
// decoder transformer and its losses need, and serialisation to a ModelProto that ONNX Runtime loads.
// Each node records its inputs and attributes so engine/onnx/autodiff.ts can emit its backward pass.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool';
/** A dimension: a size, or the name of a size known only when the graph runs ("batch", "seq"). */
export type Dim = number | string;
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };

export const ONNX_OPSET = 17;

const ELEM_TYPE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
};

export const isFloat = (dtype: DType): boolean => dtype === 'float32' || dtype === 'float64';

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: readonly Dim[],
    /** The node that produced it; undefined for graph inputs, initializers and constants. */
    readonly producer?: GraphNode,
  ) {}

  get rank(): number {
    return this.shape.length;
  }
}

/** A hand-written vector-Jacobian product: the gradients of a custom gradient's `wrt`, given its value's. */
export type CustomVjp = (g: Graph, grad: Tensor) => Tensor[];

/** The gradient of a node made by Graph.withGradient. */
export interface CustomGradient {
  wrt: Tensor[];
  vjp: CustomVjp;
}

export interface GraphNode {
  opType: string;
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: Record<string, AttrValue>;
  /** Op-specific facts the gradient rules need (static axes, permutation, ...). */
  info: Record<string, unknown>;
}

interface Initializer {
  name: string;
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
}

export class GraphError extends Error {
  override readonly name = 'GraphError';
}

/**
 * Broadcast two shapes by the NumPy rule. A symbolic dim against a literal size other than 1 is taken
 * to be that size (ONNX Runtime checks it when the graph runs); two different symbols are an error.
 */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[], what = 'broadcast'): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else if (typeof da === 'string' && typeof db === 'number') out.push(db);
    else if (typeof db === 'string' && typeof da === 'number') out.push(da);
    else throw new GraphError(`${what}: shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
  }
  return out;
}

const normAxis = (axis: number, rank: number): number => {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new GraphError(`axis ${axis} out of range for rank ${rank}`);
  return a;
};

export class Graph {
  readonly nodes: GraphNode[] = [];
  readonly inputs: Tensor[] = [];
  readonly outputs: { tensor: Tensor; name: string }[] = [];
  private readonly initializers: Initializer[] = [];
  private counter = 0;
  private readonly constants = new Map<string, Tensor>();

  constructor(readonly name = 'graph') {}

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, dtype: DType, shape: Dim[]): Tensor {
    const t = new Tensor(this, name, dtype, shape);
    this.inputs.push(t);
    return t;
  }

  /** A named initializer (weights baked into the model). */
  initializer(name: string, dtype: DType, shape: number[], data: Initializer['data']): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new GraphError(`initializer ${name}: ${data.length} values for shape [${shape.join(', ')}]`);
    this.initializers.push({ name, dtype, shape, data });
    return new Tensor(this, name, dtype, shape);
  }

  /** A constant tensor, deduplicated by value. */
  constant(values: number | readonly number[], dtype: DType, shape?: number[]): Tensor {
    const list = typeof values === 'number' ? [values] : [...values];
    const dims = shape ?? (typeof values === 'number' ? [] : [list.length]);
    const key = `${dtype}|${dims.join(',')}|${list.join(',')}`;
    const cached = this.constants.get(key);
    if (cached) return cached;
    let data: Initializer['data'];
    if (dtype === 'float32') data = Float32Array.from(list);
    else if (dtype === 'float64') data = Float64Array.from(list);
    else if (dtype === 'int64') data = BigInt64Array.from(list.map((v) => BigInt(v)));
    else if (dtype === 'int32') data = Int32Array.from(list);
    else data = Uint8Array.from(list);
    const t = this.initializer(this.fresh('const'), dtype, dims, data);
    this.constants.set(key, t);
    return t;
  }

  /** A scalar of the same float type as `like`. */
  scalar(value: number, like: Tensor | DType): Tensor {
    return this.constant(value, typeof like === 'string' ? like : like.dtype);
  }

  output(tensor: Tensor, name: string): void {
    if (this.outputs.some((o) => o.name === name)) throw new GraphError(`duplicate graph output ${name}`);
    this.outputs.push({ tensor, name });
  }

  /** Adds a node; `outShapes`/`outTypes` give the static result (the builder's shape inference). */
  node(opType: string, inputs: (Tensor | undefined)[], outs: { dtype: DType; shape: Dim[] }[], attrs: Record<string, AttrValue> = {}, info: Record<string, unknown> = {}): Tensor[] {
    const realInputs = inputs.filter((t): t is Tensor => t !== undefined);
    const node: GraphNode = { opType, inputs: realInputs, outputs: [], attrs, info };
    for (const out of outs) node.outputs.push(new Tensor(this, this.fresh(opType.toLowerCase()), out.dtype, out.shape, node));
    this.nodes.push(node);
    return node.outputs;
  }

  private one(opType: string, inputs: (Tensor | undefined)[], dtype: DType, shape: Dim[], attrs: Record<string, AttrValue> = {}, info: Record<string, unknown> = {}): Tensor {
    return this.node(opType, inputs, [{ dtype, shape }], attrs, info)[0]!;
  }

  private binary(opType: string, a: Tensor, b: Tensor, outDtype?: DType): Tensor {
    if (a.dtype !== b.dtype) throw new GraphError(`${opType}: dtypes ${a.dtype} and ${b.dtype} differ`);
    return this.one(opType, [a, b], outDtype ?? a.dtype, broadcastShapes(a.shape, b.shape, opType));
  }

  private unary(opType: string, x: Tensor, attrs: Record<string, AttrValue> = {}): Tensor {
    return this.one(opType, [x], x.dtype, [...x.shape], attrs);
  }

  // Elementwise arithmetic. A number operand becomes a scalar constant of the other side's type.
  private lift(x: Tensor | number, like: Tensor): Tensor {
    return typeof x === 'number' ? this.scalar(x, like) : x;
  }
  add(a: Tensor | number, b: Tensor | number): Tensor {
    const [x, y] = this.pair(a, b);
    return this.binary('Add', x, y);
  }
  sub(a: Tensor | number, b: Tensor | number): Tensor {
    const [x, y] = this.pair(a, b);
    return this.binary('Sub', x, y);
  }
  mul(a: Tensor | number, b: Tensor | number): Tensor {
    const [x, y] = this.pair(a, b);
    return this.binary('Mul', x, y);
  }
  div(a: Tensor | number, b: Tensor | number): Tensor {
    const [x, y] = this.pair(a, b);
    return this.binary('Div', x, y);
  }
  private pair(a: Tensor | number, b: Tensor | number): [Tensor, Tensor] {
    if (typeof a === 'number' && typeof b === 'number') throw new GraphError('an operation needs at least one tensor');
    const like = (typeof a === 'number' ? b : a) as Tensor;
    return [this.lift(a, like), this.lift(b, like)];
  }
  /** x^p for a constant exponent p. */
  pow(x: Tensor, p: number): Tensor {
    return this.one('Pow', [x, this.scalar(p, x)], x.dtype, [...x.shape], {}, { exponent: p });
  }
  neg(x: Tensor): Tensor {
    return this.unary('Neg', x);
  }
  sqrt(x: Tensor): Tensor {
    return this.unary('Sqrt', x);
  }
  exp(x: Tensor): Tensor {
    return this.unary('Exp', x);
  }
  log(x: Tensor): Tensor {
    return this.unary('Log', x);
  }
  sigmoid(x: Tensor): Tensor {
    return this.unary('Sigmoid', x);
  }
  abs(x: Tensor): Tensor {
    return this.unary('Abs', x);
  }
  identity(x: Tensor): Tensor {
    return this.unary('Identity', x);
  }
  min(a: Tensor, b: Tensor): Tensor {
    return this.binary('Min', a, b);
  }
  max(a: Tensor, b: Tensor): Tensor {
    return this.binary('Max', a, b);
  }
  clip(x: Tensor, lo: number, hi: number): Tensor {
    return this.one('Clip', [x, this.scalar(lo, x), this.scalar(hi, x)], x.dtype, [...x.shape], {}, { lo, hi });
  }
  less(a: Tensor, b: Tensor): Tensor {
    return this.binary('Less', a, b, 'bool');
  }
  greater(a: Tensor, b: Tensor): Tensor {
    return this.binary('Greater', a, b, 'bool');
  }
  equal(a: Tensor, b: Tensor): Tensor {
    return this.binary('Equal', a, b, 'bool');
  }
  and(a: Tensor, b: Tensor): Tensor {
    return this.binary('And', a, b, 'bool');
  }
  not(x: Tensor): Tensor {
    return this.unary('Not', x);
  }
  where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
    const [x, y] = this.pair(a, b);
    if (cond.dtype !== 'bool') throw new GraphError('Where: condition must be bool');
    return this.one('Where', [cond, x, y], x.dtype, broadcastShapes(cond.shape, broadcastShapes(x.shape, y.shape, 'Where'), 'Where'));
  }
  cast(x: Tensor, to: DType): Tensor {
    if (x.dtype === to) return x;
    return this.one('Cast', [x], to, [...x.shape], { to: ELEM_TYPE[to] });
  }

  matmul(a: Tensor, b: Tensor): Tensor {
    if (a.dtype !== b.dtype) throw new GraphError(`MatMul: dtypes ${a.dtype} and ${b.dtype} differ`);
    if (a.rank < 2 || b.rank < 2) throw new GraphError('MatMul: both operands need rank ≥ 2 here (1-D operands are not supported by the gradient rules)');
    const k1 = a.shape[a.rank - 1]!;
    const k2 = b.shape[b.rank - 2]!;
    if (k1 !== k2) throw new GraphError(`MatMul: inner dimensions ${k1} and ${k2} differ`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'MatMul');
    return this.one('MatMul', [a, b], a.dtype, [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!]);
  }

  private reduced(x: Tensor, axes: number[], keepdims: boolean): { axes: number[]; shape: Dim[] } {
    const norm = [...new Set(axes.map((a) => normAxis(a, x.rank)))].sort((p, q) => p - q);
    const shape = keepdims ? x.shape.map((d, i) => (norm.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !norm.includes(i));
    return { axes: norm, shape };
  }
  reduceSum(x: Tensor, axes: number[], keepdims = false): Tensor {
    const r = this.reduced(x, axes, keepdims);
    return this.one('ReduceSum', [x, this.constant(r.axes, 'int64')], x.dtype, r.shape, { keepdims: keepdims ? 1 : 0 }, { axes: r.axes, keepdims });
  }
  reduceMean(x: Tensor, axes: number[], keepdims = false): Tensor {
    const r = this.reduced(x, axes, keepdims);
    return this.one('ReduceMean', [x], x.dtype, r.shape, { axes: r.axes, keepdims: keepdims ? 1 : 0 }, { axes: r.axes, keepdims });
  }
  reduceMax(x: Tensor, axes: number[], keepdims = false): Tensor {
    const r = this.reduced(x, axes, keepdims);
    return this.one('ReduceMax', [x], x.dtype, r.shape, { axes: r.axes, keepdims: keepdims ? 1 : 0 }, { axes: r.axes, keepdims });
  }
  softmax(x: Tensor, axis = -1): Tensor {
    return this.unaryAxis('Softmax', x, axis);
  }
  logSoftmax(x: Tensor, axis = -1): Tensor {
    return this.unaryAxis('LogSoftmax', x, axis);
  }
  private unaryAxis(opType: string, x: Tensor, axis: number): Tensor {
    const a = normAxis(axis, x.rank);
    return this.one(opType, [x], x.dtype, [...x.shape], { axis: a }, { axis: a });
  }

  /** Gather along axis 0 (embedding lookup): data [N, ...], indices [...] → [...indices, ...data[1:]]. */
  gather(data: Tensor, indices: Tensor): Tensor {
    if (indices.dtype !== 'int64' && indices.dtype !== 'int32') throw new GraphError('Gather: indices must be integers');
    return this.one('Gather', [data, indices], data.dtype, [...indices.shape, ...data.shape.slice(1)], { axis: 0 });
  }
  gatherElements(data: Tensor, indices: Tensor, axis: number): Tensor {
    const a = normAxis(axis, data.rank);
    if (indices.rank !== data.rank) throw new GraphError('GatherElements: indices must have the rank of data');
    return this.one('GatherElements', [data, indices], data.dtype, [...indices.shape], { axis: a }, { axis: a });
  }

  /**
   * Reshape to `dims`: a number is a size, -1 is inferred, and a symbolic dim must sit at the same
   * position in the input (it is copied, ONNX's 0).
   */
  reshape(x: Tensor, dims: Dim[]): Tensor {
    const code = dims.map((d, i) => {
      if (typeof d === 'number') {
        if (d === 0) throw new GraphError('Reshape: a zero-size dim is not supported');
        return d;
      }
      if (x.shape[i] !== d) throw new GraphError(`Reshape: symbolic dim ${d} must be at position ${i} of the input [${x.shape.join(', ')}]`);
      return 0;
    });
    if (code.filter((c) => c === -1).length > 1) throw new GraphError('Reshape: at most one -1');
    const shape: Dim[] = dims.map((d) => (d === -1 ? `${this.fresh('dim')}` : d));
    return this.one('Reshape', [x, this.constant(code, 'int64')], x.dtype, shape);
  }
  /**
   * [..., K] → [rows, K]: every axis but the last folded into one. A symbolic row count is named by its
   * expression ("batch*seq"), so two tensors with the same leading axes agree by name.
   */
  flattenRows(x: Tensor): Tensor {
    if (x.rank < 2) throw new GraphError(`flattenRows: needs rank ≥ 2, got [${x.shape.join(', ')}]`);
    const lead = x.shape.slice(0, -1);
    const last = x.shape[x.rank - 1]!;
    const rows: Dim = lead.every((d): d is number => typeof d === 'number') ? lead.reduce((p, q) => p * q, 1) : lead.map(String).join('*');
    return this.one('Reshape', [x, this.constant([-1, typeof last === 'number' ? last : 0], 'int64')], x.dtype, [rows, last]);
  }
  /** Reshape to the runtime shape of `like` (used by gradients). */
  reshapeLike(x: Tensor, like: Tensor): Tensor {
    return this.one('Reshape', [x, this.shapeOf(like)], x.dtype, [...like.shape]);
  }
  shapeOf(x: Tensor): Tensor {
    return this.one('Shape', [x], 'int64', [x.rank]);
  }
  transpose(x: Tensor, perm: number[]): Tensor {
    if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) throw new GraphError(`Transpose: bad permutation [${perm.join(', ')}] for rank ${x.rank}`);
    return this.one('Transpose', [x], x.dtype, perm.map((p) => x.shape[p]!), { perm }, { perm });
  }
  /** Static slice with step 1. `end` may be Infinity (to the end) or negative (from the end). */
  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    const a = normAxis(axis, x.rank);
    if (start < 0 && end !== Infinity) throw new GraphError('Slice: a negative start (counted from the end) needs end = Infinity');
    const dim = x.shape[a]!;
    // A symbolic result is named by its expression ("seq-1"), so two slices of the same length agree.
    const shorter = (by: number): Dim => (typeof dim === 'number' ? dim - by : by === 0 ? dim : `${dim}-${by}`);
    let size: Dim;
    if (start < 0) size = -start;
    else if (end === Infinity) size = shorter(start);
    else if (end < 0) size = shorter(start - end);
    else size = end - start;
    const onnxEnd = end === Infinity ? Number.MAX_SAFE_INTEGER : end;
    const shape = x.shape.map((d, i) => (i === a ? size : d));
    return this.one('Slice', [x, this.constant([start], 'int64'), this.constant([onnxEnd], 'int64'), this.constant([a], 'int64')], x.dtype, shape, {}, { axis: a, start, end });
  }
  /**
   * Slice of `axis` over the run-time range [start, end) (int64 tensors of shape [1]), its size named
   * `size`: for pieces of a symbolic axis whose bounds are computed in the graph (the causal attention
   * chunks). Its gradient pads the piece back with zeros.
   */
  sliceRange(x: Tensor, axis: number, start: Tensor, end: Tensor, size: Dim): Tensor {
    const a = normAxis(axis, x.rank);
    const shape = x.shape.map((d, i) => (i === a ? size : d));
    return this.one('Slice', [x, start, end, this.constant([a], 'int64')], x.dtype, shape, {}, { axis: a, start, end });
  }
  /** The run-time size of `axis` of x, as an int64 tensor of shape [1]. */
  sizeOf(x: Tensor, axis: number): Tensor {
    return this.one('Gather', [this.shapeOf(x), this.constant([normAxis(axis, x.rank)], 'int64')], 'int64', [1], { axis: 0 });
  }
  concat(xs: Tensor[], axis: number): Tensor {
    const first = xs[0];
    if (!first) throw new GraphError('Concat: no inputs');
    const a = normAxis(axis, first.rank);
    const sizes = xs.map((x) => x.shape[a]!);
    // A symbolic result is named by its expression ("past+1"), so equal sizes agree by name.
    const numeric = sizes.filter((s): s is number => typeof s === 'number');
    const size: Dim = numeric.length === sizes.length ? numeric.reduce((p, q) => p + q, 0) : sizes.map(String).join('+');
    return this.one('Concat', xs, first.dtype, first.shape.map((d, i) => (i === a ? size : d)), { axis: a }, { axis: a });
  }
  unsqueeze(x: Tensor, axes: number[]): Tensor {
    const rank = x.rank + axes.length;
    const norm = axes.map((ax) => normAxis(ax, rank)).sort((p, q) => p - q);
    const shape: Dim[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) shape.push(norm.includes(i) ? 1 : x.shape[k++]!);
    return this.one('Unsqueeze', [x, this.constant(norm, 'int64')], x.dtype, shape, {}, { axes: norm });
  }
  /** Broadcast x to `like`'s runtime shape. */
  expandLike(x: Tensor, like: Tensor): Tensor {
    return this.one('Expand', [x, this.shapeOf(like)], x.dtype, broadcastShapes(x.shape, like.shape, 'Expand'));
  }
  /** Zeros with the runtime shape of `like` (and its dtype unless given). */
  zerosLike(like: Tensor, dtype: DType = like.dtype): Tensor {
    return this.expandLike(this.scalar(0, dtype), like.dtype === dtype ? like : this.cast(like, dtype));
  }
  /**
   * Scatter-add of `updates` into zeros shaped like `data` at rows `indices` (the Gather gradient). Rows
   * that repeat are summed first, as onehot(slot of each index) · updates over the U distinct indices
   * (Unique, sorted), then the U sums are written to their rows by ScatterND without reduction. Not
   * ScatterND with reduction 'add': ONNX Runtime's CPU kernel adds repeated rows from several threads at
   * once, which loses updates (the embedding gradient of a 64-sequence batch came out different on every
   * run with 2 threads); a MatMul is exact and repeatable, and with distinct rows no two writes meet.
   * Costs U × N × H multiply-adds and a U × N one-hot (U ≤ N), where a one-hot over every row of `data`
   * (the vocabulary, for an embedding) cost V × N × H and a V × N buffer.
   */
  scatterAddRows(data: Tensor, indices: Tensor, updates: Tensor): Tensor {
    const [rows, ...rest] = data.shape;
    if (typeof rows !== 'number' || rest.some((d) => typeof d !== 'number')) throw new GraphError(`scatterAddRows needs data of static shape, got [${data.shape.join(', ')}]`);
    const width = (rest as number[]).reduce((a, b) => a * b, 1);
    const flat = this.reshape(this.cast(indices, 'int64'), [-1]);
    const [distinct, , slotOf] = this.node('Unique', [flat], [
      { dtype: 'int64', shape: ['distinct'] },
      { dtype: 'int64', shape: ['distinct'] },
      { dtype: 'int64', shape: [flat.shape[0]!] },
      { dtype: 'int64', shape: ['distinct'] },
    ], { sorted: 1 });
    const count = this.one('Reshape', [this.shapeOf(distinct!), this.constant([], 'int64', [0])], 'int64', []);
    const slots = this.one('Range', [this.constant(0, 'int64'), count, this.constant(1, 'int64')], 'int64', ['distinct']);
    const oneHot = this.cast(this.equal(this.unsqueeze(slots, [1]), this.unsqueeze(slotOf!, [0])), data.dtype);
    // Both flattened lengths are the same N at run time, but each reshape names its -1 afresh, so the
    // builder's MatMul check cannot see it: the node is declared directly.
    const summed = this.one('MatMul', [oneHot, this.reshape(updates, [-1, width])], data.dtype, ['distinct', width]);
    const zeros = this.one('Expand', [this.scalar(0, data.dtype), this.constant([rows, width], 'int64')], data.dtype, [rows, width]);
    const scattered = this.one('ScatterND', [zeros, this.unsqueeze(distinct!, [1]), summed], data.dtype, [rows, width]);
    return this.reshape(scattered, [...data.shape]);
  }
  /** Zeros shaped like `data` with `updates` added at `indices` along `axis` (the GatherElements gradient). */
  scatterAddElements(data: Tensor, indices: Tensor, updates: Tensor, axis: number): Tensor {
    return this.addAtElements(this.zerosLike(data), indices, updates, axis);
  }
  /** `base` with `updates` added at `indices` along `axis`. */
  addAtElements(base: Tensor, indices: Tensor, updates: Tensor, axis: number): Tensor {
    return this.one('ScatterElements', [base, indices, updates], base.dtype, [...base.shape], { axis, reduction: 'add' });
  }
  /**
   * `value`, computed from `wrt` by ordinary nodes, as a tensor whose gradient is `vjp`'s (the gradients
   * of `wrt` given the value's) rather than its nodes' rules composed: for a composite whose gradient
   * written by hand takes fewer passes over large tensors. An Identity node, which ONNX Runtime removes.
   */
  withGradient(value: Tensor, wrt: Tensor[], vjp: CustomVjp): Tensor {
    return this.one('Identity', [value], value.dtype, [...value.shape], {}, { custom: { wrt, vjp } satisfies CustomGradient });
  }
  /** Splits `x` along `axis` into pieces as large as the given tensors are along it (the Concat gradient). */
  splitLike(x: Tensor, axis: number, parts: Tensor[]): Tensor[] {
    const sizes = this.concat(parts.map((p) => this.sizeOf(p, axis)), 0);
    return this.node('Split', [x, sizes], parts.map((p) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === axis ? p.shape[axis]! : d)) })), { axis });
  }
  /**
   * Pad axis `axis` with `before` and `after` zeros (the Slice gradient): numbers, or int64 tensors of
   * shape [1] computed at run time.
   */
  padAxis(x: Tensor, axis: number, before: number | Tensor, after: number | Tensor, like: Tensor): Tensor {
    let pads: Tensor;
    if (typeof before === 'number' && typeof after === 'number') {
      const fixed = new Array<number>(2 * x.rank).fill(0);
      fixed[axis] = before;
      fixed[x.rank + axis] = after;
      pads = this.constant(fixed, 'int64');
    } else {
      const amount = (n: number | Tensor): Tensor => (typeof n === 'number' ? this.constant([n], 'int64') : n);
      const zeros = (count: number): Tensor[] => (count > 0 ? [this.constant(new Array<number>(count).fill(0), 'int64')] : []);
      pads = this.concat([...zeros(axis), amount(before), ...zeros(x.rank - 1), amount(after), ...zeros(x.rank - 1 - axis)], 0);
    }
    return this.one('Pad', [x, pads], x.dtype, [...like.shape], { mode: 'constant' });
  }
  /** Product of the runtime sizes of `axes` of x, as a scalar of `dtype` (for means over symbolic dims). */
  countOf(x: Tensor, axes: number[], dtype: DType): Tensor {
    const sizes = this.one('Gather', [this.shapeOf(x), this.constant(axes, 'int64')], 'int64', [axes.length], { axis: 0 });
    const prod = this.one('ReduceProd', [sizes], 'int64', [], { keepdims: 0 });
    return this.cast(prod, dtype);
  }

  /** Serialises to ONNX ModelProto bytes. */
  toModelBytes(): Uint8Array {
    const valueInfo = (name: string, dtype: DType, shape: readonly Dim[]): onnxProto.onnx.IValueInfoProto => ({
      name,
      type: { tensorType: { elemType: ELEM_TYPE[dtype], shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
    });
    const attribute = (name: string, v: AttrValue): onnxProto.onnx.IAttributeProto => {
      const A = onnx.AttributeProto.AttributeType;
      if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
      if (typeof v === 'number') return { name, type: A.INT, i: v };
      if (Array.isArray(v)) return { name, type: A.INTS, ints: v };
      if ('float' in v) return { name, type: A.FLOAT, f: v.float };
      return { name, type: A.FLOATS, floats: v.floats };
    };
    const tensorProto = (init: Initializer): onnxProto.onnx.ITensorProto => ({
      name: init.name,
      dataType: ELEM_TYPE[init.dtype],
      dims: init.shape,
      rawData: new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength),
    });
    // A node's output that is a graph output takes the graph output's name (its consumers follow), so
    // ONNX Runtime writes it straight into the fetched tensor. An Identity would copy it whole on every
    // run: the KV cache in decode, every new weight and moment in training.
    const alias = new Map<string, string>();
    for (const o of this.outputs) if (o.tensor.producer && !alias.has(o.tensor.name)) alias.set(o.tensor.name, o.name);
    const nameOf = (t: Tensor): string => alias.get(t.name) ?? t.name;
    // ONNX Runtime runs every node, needed or not, and gradient rules emit the gradient of every input of
    // a node (e.g. of a frozen LoRA base weight, as costly as the layer's forward): only nodes an output
    // depends on are written.
    const live = new Set(this.outputs.map((o) => o.tensor.name));
    const kept = new Set<GraphNode>();
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]!;
      if (!n.outputs.some((t) => live.has(t.name))) continue;
      kept.add(n);
      for (const t of n.inputs) live.add(t.name);
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'dro-temporal',
      opsetImport: [{ domain: '', version: ONNX_OPSET }],
      graph: {
        name: this.name,
        node: this.nodes.filter((n) => kept.has(n)).map((n, i) => ({
          name: `n${i}_${n.opType}`,
          opType: n.opType,
          input: n.inputs.map(nameOf),
          output: n.outputs.map(nameOf),
          attribute: Object.entries(n.attrs).map(([k, v]) => attribute(k, v)),
        })),
        input: this.inputs.map((t) => valueInfo(t.name, t.dtype, t.shape)),
        output: this.outputs.map((o) => valueInfo(o.name, o.tensor.dtype, o.tensor.shape)),
        // Constants only pruned nodes used would each draw an ONNX Runtime warning.
        initializer: this.initializers.filter((init) => live.has(init.name)).map(tensorProto),
      },
    });
    // What is left: a graph input or initializer returned as an output, or one tensor under two names.
    for (const o of this.outputs) {
      if (nameOf(o.tensor) !== o.name) model.graph!.node!.push({ name: `out_${o.name}`, opType: 'Identity', input: [nameOf(o.tensor)], output: [o.name] });
    }
    return onnx.ModelProto.encode(model).finish();
  }
}
