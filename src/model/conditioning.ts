// The cheap part of the generator, computed in TypeScript: class embedding, c = [z; e_y], every CCBN's
// gain γ = 1 + s·c and bias β = o·c, and the truncation-indexed statistics that turn them into one
// per-(sample, channel) affine map. Editing any of these arrays edits the image without rebuilding the graph.
import type { Architecture } from './config.ts';
import type { CcbnWeights, GeneratorWeights, Weight } from './weights.ts';

/** Per-sample conditioning of every CCBN, before the statistics are folded in. */
export interface Conditioning {
  n: number;
  /** [n, 2·z_dim] */
  cond: Float32Array;
  /** gamma[i], beta[i]: [n, C_i] for CCBN i (Architecture.ccbns order) */
  gamma: Float32Array[];
  beta: Float32Array[];
}

/** e = W_emb · y for each (possibly soft) class vector y; W_emb is [z_dim, num_classes]. */
export function embed(w: GeneratorWeights, arch: Architecture, y: Float32Array, n: number): Float32Array {
  const { z_dim: zd, num_classes: nc } = arch.config;
  const e = new Float32Array(n * zd);
  for (let b = 0; b < n; b++) {
    for (let d = 0; d < zd; d++) {
      let s = 0;
      for (let c = 0; c < nc; c++) {
        const yc = y[b * nc + c];
        if (yc !== 0) s += w.embed[d * nc + c] * yc;
      }
      e[b * zd + d] = s;
    }
  }
  return e;
}

/** c = [z; e_y] — z first, as in the TF graph and the reference port. */
export function condVector(z: Float32Array, e: Float32Array, n: number, zd: number): Float32Array {
  const c = new Float32Array(n * 2 * zd);
  for (let b = 0; b < n; b++) {
    c.set(z.subarray(b * zd, (b + 1) * zd), b * 2 * zd);
    c.set(e.subarray(b * zd, (b + 1) * zd), b * 2 * zd + zd);
  }
  return c;
}

/** out[b, o] = add + W[o] · x[b] for a bias-free linear layer. */
export function linear(w: Weight, x: Float32Array, n: number, add = 0): Float32Array {
  const out = new Float32Array(n * w.out);
  for (let b = 0; b < n; b++) {
    const xb = b * w.in;
    for (let o = 0; o < w.out; o++) {
      let s = 0;
      const base = o * w.in;
      for (let i = 0; i < w.in; i++) s += w.data[base + i] * x[xb + i];
      out[b * w.out + o] = add + s;
    }
  }
  return out;
}

export function modulation(bn: CcbnWeights, cond: Float32Array, n: number) {
  return { gamma: linear(bn.scale, cond, n, 1), beta: linear(bn.offset, cond, n) };
}

export function conditioning(arch: Architecture, w: GeneratorWeights, z: Float32Array, y: Float32Array, n: number): Conditioning {
  const zd = arch.config.z_dim;
  if (z.length !== n * zd) throw new Error(`z must hold ${n}×${zd} values, got ${z.length}`);
  if (y.length !== n * arch.config.num_classes) throw new Error(`class vectors must hold ${n}×${arch.config.num_classes} values, got ${y.length}`);
  const cond = condVector(z, embed(w, arch, y, n), n, zd);
  const gamma: Float32Array[] = [];
  const beta: Float32Array[] = [];
  for (const spec of arch.ccbns) {
    const m = modulation(w.blocks[spec.block].bn[spec.j], cond, n);
    gamma.push(m.gamma);
    beta.push(m.beta);
  }
  return { n, cond, gamma, beta };
}

/**
 * Statistics row for a truncation, replicating the reference literally: q = t / step; the fractional
 * part weighs the LOWER row (so the mix is discontinuous at grid points), and the mixing runs in float32.
 */
export function truncationStats(means: Float32Array, vars: Float32Array, nStats: number, truncation: number) {
  const C = means.length / nStats;
  const q = truncation / (1.0 / (nStats - 1));
  const start = Math.trunc(q);
  const coef = q - start;
  const mean = new Float32Array(C);
  const variance = new Float32Array(C);
  if (coef !== 0) {
    const a = Math.fround(coef);
    const b = Math.fround(1 - coef);
    for (let c = 0; c < C; c++) {
      mean[c] = Math.fround(means[start * C + c] * a) + Math.fround(means[(start + 1) * C + c] * b);
      variance[c] = Math.fround(vars[start * C + c] * a) + Math.fround(vars[(start + 1) * C + c] * b);
    }
  } else {
    mean.set(means.subarray(start * C, (start + 1) * C));
    variance.set(vars.subarray(start * C, (start + 1) * C));
  }
  return { mean, variance };
}

/** BN(x)·γ + β = x·scale + shift with scale = γ/√(var+eps), shift = β − mean·scale. */
export function foldNorm(gamma: Float32Array, beta: Float32Array, mean: Float32Array, variance: Float32Array, eps: number) {
  const C = mean.length;
  const scale = new Float32Array(gamma.length);
  const shift = new Float32Array(gamma.length);
  const inv = new Float32Array(C);
  for (let c = 0; c < C; c++) inv[c] = 1 / Math.fround(Math.sqrt(Math.fround(variance[c] + eps)));
  for (let i = 0; i < gamma.length; i++) {
    const c = i % C;
    scale[i] = gamma[i] * inv[c];
    shift[i] = beta[i] - mean[c] * scale[i];
  }
  return { scale, shift };
}
