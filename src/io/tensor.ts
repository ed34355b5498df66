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
