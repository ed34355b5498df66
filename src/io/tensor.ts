// The one tensor type the toolkit passes around: a dense, contiguous, row-major float32 array with a shape.
// Checkpoint readers convert every stored dtype to float32 (the generator computes in float32 anyway) and
// remember the dtype the file had, so that errors and reports can name it.

export type StoredDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface Tensor {
  shape: number[];
  data: Float32Array;
  /** dtype as stored in the file the tensor came from */
  stored: StoredDType;
}

/** A state_dict: module path (e.g. `generator.layers.0.bn_0.scale.weight_orig`) → tensor. Insertion order is file order. */
export type StateDict = Map<string, Tensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function tensor(shape: number[], data?: Float32Array, stored: StoredDType = 'F32'): Tensor {
  const n = numel(shape);
  const d = data ?? new Float32Array(n);
  if (d.length !== n) throw new Error(`tensor: shape [${shape}] needs ${n} values, got ${d.length}`);
  return { shape, data: d, stored };
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// ---------------------------------------------------------------------------------------------------------------
// dtype helpers shared by the checkpoint readers and writers. All file formats we read are little-endian; so is
// every host Node runs on in practice, which lets us view file bytes through typed arrays directly.

/** Bytes per element of each stored dtype. */
export const DTYPE_SIZE: Readonly<Record<StoredDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half bits → float32 value (exact: every half is representable in float32). */
export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 value → IEEE half bits, rounding to nearest, ties to even (as numpy/torch do). */
export function floatToHalfBits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf, or NaN kept quiet
  if (exp > 112) {
    // Normal half (or overflow): keep 10 mantissa bits; a carry out of the mantissa correctly bumps the
    // exponent, and past the largest exponent it lands exactly on infinity (0x7c00).
    const h = ((exp - 112) << 10) | (mant >>> 13);
    if (h >= 0x7c00) return sign | 0x7c00;
    return sign | roundHalfEven(h, mant & 0x1fff, 0x1000);
  }
  if (exp === 0) return sign; // float32 subnormals are far below the smallest half subnormal
  // Half subnormal: value / 2^-24 = m * 2^(exp-126), so shift the 24-bit significand right by 126-exp (≥ 14).
  const m = mant | 0x800000;
  const shift = 126 - exp;
  if (shift > 24) return sign; // below half of the smallest subnormal: rounds to zero
  return sign | roundHalfEven(m >>> shift, m & ((1 << shift) - 1), 1 << (shift - 1));
}

function roundHalfEven(kept: number, rest: number, half: number): number {
  return rest > half || (rest === half && kept & 1) ? kept + 1 : kept;
}

/** bfloat16 bits → float32 value. */
export function bf16BitsToFloat(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0];
}

/** float32 value → bfloat16 bits, rounding to nearest, ties to even. */
export function floatToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40; // NaN: keep it a (quiet) NaN after truncation
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // cannot exceed 2^32 for non-NaN inputs
}

let halfTable: Float32Array | undefined;

/**
 * Decode `bytes` holding little-endian elements of `dtype` into a new float32 array.
 * Exception: F32 bytes that are 4-byte aligned come back as a zero-copy view (callers must not assume ownership).
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: StoredDType): Float32Array {
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new Error(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  // Typed-array views need element alignment; copying unaligned bytes once is cheaper than DataView loops.
  // (Uint8Array.prototype.slice copies; Buffer#slice, which readFileSync data has, would return a view.)
  const b = (bytes.byteOffset % size === 0) ? bytes : Uint8Array.prototype.slice.call(bytes);
  const n = b.byteLength / size;
  switch (dtype) {
    case 'F32': return new Float32Array(b.buffer, b.byteOffset, n);
    case 'F64': return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, n));
    case 'I32': return Float32Array.from(new Int32Array(b.buffer, b.byteOffset, n));
    case 'I16': return Float32Array.from(new Int16Array(b.buffer, b.byteOffset, n));
    case 'I8': return Float32Array.from(new Int8Array(b.buffer, b.byteOffset, n));
    case 'U8': return Float32Array.from(b);
    case 'BOOL': return Float32Array.from(b, (v) => (v ? 1 : 0));
    case 'I64': {
      const src = new BigInt64Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    case 'F16': {
      if (!halfTable) {
        halfTable = new Float32Array(65536);
        for (let h = 0; h < 65536; h++) halfTable[h] = halfBitsToFloat(h);
      }
      const src = new Uint16Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfTable[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return out;
    }
  }
}

/** Encode float32 values as little-endian F32/F16/BF16 bytes (always a fresh buffer). */
export function encodeFromFloat32(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.slice().buffer);
  const out = new Uint16Array(data.length);
  const enc = dtype === 'F16' ? floatToHalfBits : floatToBf16Bits;
  for (let i = 0; i < data.length; i++) out[i] = enc(data[i]);
  return new Uint8Array(out.buffer);
}

// ---------------------------------------------------------------------------------------------------------------
// Strided views (torch tensors are (storage, offset, size, stride); ours are contiguous row-major).

export function contiguousStrides(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) { stride[d] = s; s *= shape[d]; }
  return stride;
}

/** True when a (shape, stride) view walks memory in row-major order without gaps (size-1 dims don't count). */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  const want = contiguousStrides(shape);
  return shape.every((n, d) => n <= 1 || stride[d] === want[d]);
}

/** Largest storage index (relative to the offset) a view touches, or -1 for an empty view. */
export function stridedExtent(shape: readonly number[], stride: readonly number[]): number {
  if (shape.some((n) => n === 0)) return -1;
  return shape.reduce((acc, n, d) => acc + (n - 1) * stride[d], 0);
}

/** Calls `row(storageIndex, outIndex)` for each innermost row of a strided view, in row-major order. */
function forEachRow(shape: readonly number[], stride: readonly number[], offset: number,
  row: (base: number, out: number) => void): void {
  const nd = shape.length;
  if (nd === 0) { row(offset, 0); return; }
  if (shape.some((n) => n === 0)) return;
  const rowLen = shape[nd - 1];
  const idx = new Array<number>(nd).fill(0);
  let base = offset;
  for (let out = 0; ; out += rowLen) {
    row(base, out);
    let d = nd - 2;
    for (; d >= 0; d--) {
      idx[d]++;
      base += stride[d];
      if (idx[d] < shape[d]) break;
      base -= stride[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/** Copy a strided view of `src` into a new contiguous row-major array. */
export function gatherStrided(src: ArrayLike<number>, offset: number, shape: readonly number[],
  stride: readonly number[]): Float32Array {
  const out = new Float32Array(numel(shape));
  const rowLen = shape.length ? shape[shape.length - 1] : 1;
  const step = shape.length ? stride[shape.length - 1] : 1;
  forEachRow(shape, stride, offset, (base, o) => {
    for (let k = 0; k < rowLen; k++) out[o + k] = src[base + k * step];
  });
  return out;
}

/** Inverse of gatherStrided: write contiguous `src` into `dst` through a strided view. */
export function scatterStrided(dst: { [i: number]: number }, offset: number, shape: readonly number[],
  stride: readonly number[], src: ArrayLike<number>): void {
  const rowLen = shape.length ? shape[shape.length - 1] : 1;
  const step = shape.length ? stride[shape.length - 1] : 1;
  forEachRow(shape, stride, offset, (base, o) => {
    for (let k = 0; k < rowLen; k++) dst[base + k * step] = src[o + k];
  });
}
