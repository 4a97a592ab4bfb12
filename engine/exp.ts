// exp(x) for x ≤ 0 with exactly Math.exp's bits, faster in the sampler's loops: the sampler takes one
// exponential per vocabulary entry per row (49k at SmolLM2's size), and V8's Math.exp is a call into
// its C++ port of fdlibm's e_exp.c. This is that algorithm in float64 (argument reduction by ln 2 in
// two parts, the degree-5 minimax polynomial, scaling by 2^k), with the same operations in the same
// order for every input, written in JavaScript so the JIT inlines it into the loop: about 1.2× faster
// over a row of real logits, and a token never depends on which of the two computed a weight
// (engine/exp.test.ts compares them on millions of inputs and at every threshold).

/** The double whose high 32 bits are `high` and low bits 0 (the form of fdlibm's thresholds). */
function fromHighWord(high: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, high);
  return view.getFloat64(0);
}

// fdlibm compares the high word of |x| against these; comparing |x| against the double with that high
// word and a zero low word decides the same.
/** |x| ≥ this: fdlibm's hx > 0x3fd62e42 (|x| > 0.5·ln 2), where the argument is reduced. */
const REDUCE_ABOVE = fromHighWord(0x3fd62e43);
/** |x| < 2^-28: exp(x) rounds to 1 + x. */
const TINY = fromHighWord(0x3e300000);
/** Below this fdlibm's subnormal scaling starts (k < −1021); the rare such input goes to Math.exp. */
const FAST_ABOVE = -708;

const LN2_HI = 6.93147180369123816490e-1;
const LN2_LO = 1.90821492927058770002e-10;
const INV_LN2 = 1.44269504088896338700;
const P1 = 1.66666666666666019037e-1;
const P2 = -2.77777777770155933842e-3;
const P3 = 6.61375632143793436117e-5;
const P4 = -1.65339022054652515390e-6;
const P5 = 4.13813679705723846039e-8;

/** 2^k for k in [−1021, 0] at index k + 1021: fdlibm builds it from the exponent bits. */
const POW2 = Float64Array.from({ length: 1022 }, (_, i) => fromHighWord(((0x3ff + i - 1021) << 20) >>> 0));

/** Math.exp(x), bit for bit, computed inline for −708 < x ≤ 0 (and by Math.exp otherwise). */
export function expNonPositive(x: number): number {
  if (!(x <= 0 && x > FAST_ABOVE)) return Math.exp(x);
  const ax = -x;
  if (ax < TINY) return 1 + x;
  // fdlibm takes k = 0 below 0.5·ln 2 and k = −1 below 1.5·ln 2 in branches of their own, whose
  // results are what the general reduction gives for that k (its hi, lo and final formula reduce to
  // theirs exactly). Logits put x on both sides of those thresholds at random, so branching on them
  // costs a misprediction per entry: k comes from the general formula, which agrees with fdlibm's
  // choice except just below 0.5·ln 2 (where it already gives −1), corrected by a rarely taken branch.
  let k = (INV_LN2 * x - 0.5) | 0;
  if (k === -1 && ax < REDUCE_ABOVE) k = 0;
  const hi = x - k * LN2_HI;
  const lo = k * LN2_LO;
  const r = hi - lo;
  const t = r * r;
  const c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  const y = 1 - (lo - (r * c) / (2.0 - c) - hi);
  return y * POW2[k + 1021]!;
}
