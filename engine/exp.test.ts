// expNonPositive against Math.exp, bit for bit: random inputs over every branch of the algorithm, its
// thresholds and their neighbours, and the inputs it hands to Math.exp.
import { describe, expect, it } from 'vitest';
import { uniformStream } from '../dro/random.js';
import { expNonPositive } from './exp.js';

const bits = new Float64Array(1);
/** x and the `count` doubles on either side of it (x not 0, so stepping the bit pattern stays in sign). */
function neighbours(x: number, count: number): number[] {
  const big = new BigUint64Array(bits.buffer);
  bits[0] = x;
  const at = big[0]!;
  return Array.from({ length: 2 * count + 1 }, (_, i) => {
    big[0] = at + BigInt(i - count);
    return bits[0]!;
  });
}
/** The double with this high word and a zero low word: the form of fdlibm's branch thresholds. */
function fromHighWord(high: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, high);
  return view.getFloat64(0);
}

describe('expNonPositive', () => {
  it('equals Math.exp bit for bit on 3 million keyed inputs in (−750, 0]', () => {
    const u = uniformStream(['exp-test']);
    let mismatches = 0;
    let first: number | undefined;
    for (let i = 0; i < 3_000_000; i++) {
      // Four ranges: the whole domain, the logit differences a sampler sees, the two reduction branches.
      const scale = [750, 30, 1.1, 0.4][i % 4]!;
      const x = -u(i) * scale;
      if (!Object.is(expNonPositive(x), Math.exp(x))) {
        mismatches++;
        first ??= x;
      }
    }
    expect({ mismatches, first }).toEqual({ mismatches: 0, first: undefined });
  });

  it('equals Math.exp at the thresholds between branches, their neighbours, and the edges', () => {
    // fdlibm's thresholds on the high word of |x| (0.5·ln 2, 1.5·ln 2, 2^-28, the overflow and underflow
    // limits), the fast path's own limit −708, and the values they approximate.
    const highWords = [0x3fd62e42, 0x3fd62e43, 0x3ff0a2b1, 0x3ff0a2b2, 0x3e300000, 0x40862e42];
    const thresholds = [...highWords.map((h) => -fromHighWord(h)), -0.5 * Math.LN2, -1.5 * Math.LN2, -708, -745.1332191019411, -1, -Math.LN2];
    const inputs = [0, -0, -Number.MIN_VALUE, -1e-300, -Infinity, NaN, 1, 0.5, ...thresholds.flatMap((x) => neighbours(x, 40))];
    for (const x of inputs) expect([x, expNonPositive(x)]).toEqual([x, Math.exp(x)]);
  });
});
