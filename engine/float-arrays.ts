// The engine's float arrays: float32 for real work, float64 for gradient checks, and the two ways every
// module makes one (zeros, an owned copy).
export type FloatArray = Float32Array | Float64Array;
export type FloatDType = 'float32' | 'float64';

export function zeros(dtype: FloatDType, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

/** A fresh copy in `dtype`, so the engine never shares an array with its caller. */
export function copyAs(dtype: FloatDType, a: FloatArray): FloatArray {
  if (dtype === 'float64') return a instanceof Float64Array ? a.slice() : Float64Array.from(a);
  return a instanceof Float32Array ? a.slice() : Float32Array.from(a);
}
