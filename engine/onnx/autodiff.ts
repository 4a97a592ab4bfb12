// Reverse-mode automatic differentiation over a Graph: walks the nodes between the parameters and a scalar
// loss backwards and emits each operator's vector-Jacobian product as ordinary ONNX operators, so ONNX
// Runtime runs forward and backward as one session. Broadcasting is undone by summing broadcast axes.
import { GraphError, isFloat, type CustomGradient, type Dim, type Graph, type GraphNode, type Tensor } from './graph.js';

/**
 * Sums `grad` (shaped like a broadcast result) back to the shape of `x`: leading axes x lacks and axes
 * where x has a literal 1 are summed, then the result is reshaped to x's runtime shape.
 */
export function unbroadcast(g: Graph, grad: Tensor, x: Tensor): Tensor {
  if (sameShape(grad.shape, x.shape)) return grad;
  const lead = grad.rank - x.rank;
  const axes: number[] = [];
  for (let i = 0; i < grad.rank; i++) {
    if (i < lead) axes.push(i);
    else if (x.shape[i - lead] === 1 && grad.shape[i] !== 1) axes.push(i);
  }
  const summed = axes.length > 0 ? g.reduceSum(grad, axes, true) : grad;
  return g.reshapeLike(summed, x);
}

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

type Vjp = (g: Graph, node: GraphNode, grad: Tensor) => (Tensor | undefined)[];

const lastTwoSwapped = (rank: number): number[] => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];

/** Gradient of a reduction: broadcast the upstream gradient back over the reduced axes. */
function expandReduced(g: Graph, node: GraphNode, grad: Tensor): Tensor {
  const x = node.inputs[0]!;
  const axes = node.info.axes as number[];
  const keep = node.info.keepdims ? grad : g.unsqueeze(grad, axes);
  return g.expandLike(keep, x);
}

const RULES: Record<string, Vjp> = {
  Identity: (_g, _n, grad) => [grad],
  Add: (g, n, grad) => [unbroadcast(g, grad, n.inputs[0]!), unbroadcast(g, grad, n.inputs[1]!)],
  Sub: (g, n, grad) => [unbroadcast(g, grad, n.inputs[0]!), unbroadcast(g, g.neg(grad), n.inputs[1]!)],
  Mul: (g, n, grad) => {
    const [a, b] = n.inputs as [Tensor, Tensor];
    return [unbroadcast(g, g.mul(grad, b), a), unbroadcast(g, g.mul(grad, a), b)];
  },
  Div: (g, n, grad) => {
    const [a, b] = n.inputs as [Tensor, Tensor];
    const out = n.outputs[0]!;
    return [unbroadcast(g, g.div(grad, b), a), unbroadcast(g, g.neg(g.div(g.mul(grad, out), b)), b)];
  },
  Neg: (g, _n, grad) => [g.neg(grad)],
  Pow: (g, n, grad) => {
    const x = n.inputs[0]!;
    const p = n.info.exponent as number;
    return [g.mul(grad, g.mul(g.pow(x, p - 1), p)), undefined];
  },
  Sqrt: (g, n, grad) => [g.div(grad, g.mul(n.outputs[0]!, 2))],
  Exp: (g, n, grad) => [g.mul(grad, n.outputs[0]!)],
  Log: (g, n, grad) => [g.div(grad, n.inputs[0]!)],
  Abs: (g, n, grad) => {
    const x = n.inputs[0]!;
    const zero = g.scalar(0, x);
    const one = g.scalar(1, x);
    const sign = g.where(g.less(x, zero), g.neg(one), g.where(g.greater(x, zero), one, zero));
    return [g.mul(grad, sign)];
  },
  Sigmoid: (g, n, grad) => {
    const s = n.outputs[0]!;
    return [g.mul(grad, g.mul(s, g.sub(1, s)))];
  },
  Min: (g, n, grad) => {
    // Ties send the gradient to the first operand only, so it is not counted twice.
    const [a, b] = n.inputs as [Tensor, Tensor];
    const takeA = g.not(g.greater(a, b));
    return [unbroadcast(g, g.where(takeA, grad, 0), a), unbroadcast(g, g.where(takeA, 0, grad), b)];
  },
  Max: (g, n, grad) => {
    const [a, b] = n.inputs as [Tensor, Tensor];
    const takeA = g.not(g.less(a, b));
    return [unbroadcast(g, g.where(takeA, grad, 0), a), unbroadcast(g, g.where(takeA, 0, grad), b)];
  },
  Clip: (g, n, grad) => {
    const x = n.inputs[0]!;
    const inside = g.and(g.not(g.less(x, g.scalar(n.info.lo as number, x))), g.not(g.greater(x, g.scalar(n.info.hi as number, x))));
    return [g.where(inside, grad, 0), undefined, undefined];
  },
  Where: (g, n, grad) => {
    const [cond, a, b] = n.inputs as [Tensor, Tensor, Tensor];
    return [undefined, unbroadcast(g, g.where(cond, grad, 0), a), unbroadcast(g, g.where(cond, 0, grad), b)];
  },
  Cast: (g, n, grad) => {
    const x = n.inputs[0]!;
    return [isFloat(x.dtype) ? g.cast(grad, x.dtype) : undefined];
  },
  MatMul: (g, n, grad) => {
    const [a, b] = n.inputs as [Tensor, Tensor];
    const ga = g.matmul(grad, g.transpose(b, lastTwoSwapped(b.rank)));
    if (b.rank === 2 && a.rank > 2) {
      // A weight applied to a batch of rows: one GEMM over all rows at once. The batched product and a
      // ReduceSum over its batch axes did the same sum with a [batch, K, N] intermediate, at a lower rate.
      return [ga, g.matmul(g.transpose(g.flattenRows(a), [1, 0]), g.flattenRows(grad))];
    }
    const gb = g.matmul(g.transpose(a, lastTwoSwapped(a.rank)), grad);
    return [unbroadcast(g, ga, a), unbroadcast(g, gb, b)];
  },
  ReduceSum: (g, n, grad) => [expandReduced(g, n, grad), undefined],
  ReduceMean: (g, n, grad) => {
    const x = n.inputs[0]!;
    return [g.div(expandReduced(g, n, grad), g.countOf(x, n.info.axes as number[], x.dtype))];
  },
  ReduceMax: (g, n, grad) => {
    // Ties share the gradient equally.
    const x = n.inputs[0]!;
    const axes = n.info.axes as number[];
    const out = n.info.keepdims ? n.outputs[0]! : g.unsqueeze(n.outputs[0]!, axes);
    const mask = g.cast(g.equal(x, g.expandLike(out, x)), x.dtype);
    const share = g.div(mask, g.reduceSum(mask, axes, true));
    return [g.mul(share, expandReduced(g, n, grad))];
  },
  Softmax: (g, n, grad) => {
    const y = n.outputs[0]!;
    const axis = n.info.axis as number;
    return [g.mul(y, g.sub(grad, g.reduceSum(g.mul(grad, y), [axis], true)))];
  },
  LogSoftmax: (g, n, grad) => {
    const y = n.outputs[0]!;
    const axis = n.info.axis as number;
    return [g.sub(grad, g.mul(g.exp(y), g.reduceSum(grad, [axis], true)))];
  },
  Gather: (g, n, grad) => {
    const [data, indices] = n.inputs as [Tensor, Tensor];
    return [g.scatterAddRows(data, indices, grad), undefined];
  },
  GatherElements: (g, n, grad) => {
    const [data, indices] = n.inputs as [Tensor, Tensor];
    return [g.scatterAddElements(data, indices, grad, n.info.axis as number), undefined];
  },
  Reshape: (g, n, grad) => [g.reshapeLike(grad, n.inputs[0]!), undefined],
  Unsqueeze: (g, n, grad) => [g.reshapeLike(grad, n.inputs[0]!), undefined],
  Transpose: (g, n, grad) => {
    const perm = n.info.perm as number[];
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [g.transpose(grad, inverse)];
  },
  Expand: (g, n, grad) => [unbroadcast(g, grad, n.inputs[0]!), undefined],
  Slice: (g, n, grad) => {
    const x = n.inputs[0]!;
    const axis = n.info.axis as number;
    if (typeof n.info.start === 'object') {
      const start = n.info.start as Tensor;
      return [g.padAxis(grad, axis, start, g.sub(g.sizeOf(x, axis), n.info.end as Tensor), x), undefined, undefined, undefined];
    }
    const start = n.info.start as number;
    const end = n.info.end as number;
    const dim = x.shape[axis]!;
    if (start < 0) {
      if (typeof dim !== 'number') throw new GraphError(`Slice gradient: a start counted from the end on the symbolic axis ${dim} is not supported`);
      return [g.padAxis(grad, axis, dim + start, 0, x), undefined, undefined, undefined];
    }
    let after: number;
    if (end === Infinity) after = 0;
    else if (end < 0) after = -end;
    else if (typeof dim === 'number') after = dim - end;
    else throw new GraphError(`Slice gradient: a positive end (${end}) on the symbolic axis ${dim} is not supported`);
    return [g.padAxis(grad, axis, start, after, x), undefined, undefined, undefined];
  },
  Concat: (g, n, grad) => g.splitLike(grad, n.info.axis as number, n.inputs),
};

/**
 * Gradients of the scalar `loss` with respect to each tensor in `wrt`, added to `loss`'s graph.
 * A parameter the loss does not depend on gets zeros.
 */
export function gradients(g: Graph, loss: Tensor, wrt: Tensor[]): Tensor[] {
  if (loss.rank !== 0) throw new GraphError(`gradients: the loss must be a scalar, its shape is [${loss.shape.join(', ')}]`);
  if (!isFloat(loss.dtype)) throw new GraphError('gradients: the loss must be a float tensor');
  const wanted = new Set(wrt.map((t) => t.name));

  // Nodes on a path from some wrt tensor to the loss: forward reachability from wrt ∩ backward from loss.
  const dependsOnWrt = new Set<string>(wanted);
  const order = g.nodes.slice();
  const relevant = new Set<GraphNode>();
  // A custom gradient's node stands for the nodes that computed its value: the walk goes from it
  // straight to its `wrt`, past them.
  const gradInputs = (node: GraphNode): Tensor[] => (node.info.custom as CustomGradient | undefined)?.wrt ?? node.inputs;
  for (const node of order) {
    if ([...node.inputs, ...gradInputs(node)].some((t) => dependsOnWrt.has(t.name))) for (const out of node.outputs) dependsOnWrt.add(out.name);
  }
  const neededForLoss = new Set<string>([loss.name]);
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i]!;
    if (node.outputs.some((t) => neededForLoss.has(t.name)) && node.outputs.some((t) => dependsOnWrt.has(t.name))) {
      relevant.add(node);
      for (const input of gradInputs(node)) neededForLoss.add(input.name);
    }
  }

  const grads = new Map<string, Tensor>([[loss.name, g.scalar(1, loss)]]);
  const accumulate = (t: Tensor, grad: Tensor): void => {
    const prev = grads.get(t.name);
    grads.set(t.name, prev ? g.add(prev, grad) : grad);
  };
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i]!;
    if (!relevant.has(node)) continue;
    const upstream = node.outputs.map((o) => grads.get(o.name));
    if (upstream.every((u) => u === undefined)) continue;
    const custom = node.info.custom as CustomGradient | undefined;
    if (custom) {
      const customGrads = custom.vjp(g, upstream[0]!);
      custom.wrt.forEach((t, k) => {
        if (dependsOnWrt.has(t.name)) accumulate(t, customGrads[k]!);
      });
      continue;
    }
    const rule = RULES[node.opType];
    if (!rule) throw new GraphError(`gradients: no gradient rule for ${node.opType}`);
    let inputGrads: (Tensor | undefined)[];
    if (node.outputs.length === 1) {
      inputGrads = rule(g, node, upstream[0]!);
    } else {
      throw new GraphError(`gradients: ${node.opType} has several outputs; not differentiable here`);
    }
    node.inputs.forEach((input, k) => {
      const ig = inputGrads[k];
      if (ig && isFloat(input.dtype) && dependsOnWrt.has(input.name)) accumulate(input, ig);
    });
  }
  return wrt.map((t) => grads.get(t.name) ?? g.zerosLike(t));
}
