// Every CCBN's gain and bias are affine in z and in the class embedding separately:
//   γ_k = 1 + s_kᶻ·z + s_kᵉ·e_y,   β_k = o_kᶻ·z + o_kᵉ·e_y      (c = [z; e_y], z first)
// With z = t·truncnorm(−2, 2) (independent components, variance v = t²·Var_TN), the z-parts are sums of
// many independent terms: we treat them as jointly Gaussian with zero mean and
//   Var γ = v‖s_kᶻ‖²,  Var β = v‖o_kᶻ‖²,  Cov(γ, β) = v s_kᶻ·o_kᶻ.
// This file turns the weights into those per-channel constants, laid out over all CCBNs concatenated.
import type { Architecture, CcbnSpec } from '../model/config.ts';
import type { GeneratorWeights } from '../model/weights.ts';
import { truncatedNormalVariance } from './gaussian.ts';

export interface ModulationTable {
  /** the CCBNs covered, in order; layer l occupies columns offsets[l] .. offsets[l] + channels */
  ccbns: CcbnSpec[];
  offsets: number[];
  /** total channels over all covered CCBNs */
  width: number;
  zDim: number;
  /** class parts, [z_dim, width] (transposed so that E·S gives [N, width]) */
  gammaE: Float32Array;
  betaE: Float32Array;
  /** ‖sᶻ‖², ‖oᶻ‖², sᶻ·oᶻ per channel [width], in float64 */
  gzz: Float64Array;
  bzz: Float64Array;
  gbz: Float64Array;
}

export function modulationTable(arch: Architecture, w: GeneratorWeights, ccbns: CcbnSpec[] = arch.ccbns): ModulationTable {
  const zd = arch.config.z_dim;
  const offsets: number[] = [];
  let width = 0;
  for (const c of ccbns) {
    offsets.push(width);
    width += c.channels;
  }
  const gammaE = new Float32Array(zd * width);
  const betaE = new Float32Array(zd * width);
  const gzz = new Float64Array(width);
  const bzz = new Float64Array(width);
  const gbz = new Float64Array(width);
  ccbns.forEach((spec, l) => {
    const bn = w.blocks[spec.block].bn[spec.j];
    const s = bn.scale.data;
    const o = bn.offset.data;
    const cd = 2 * zd;
    for (let k = 0; k < spec.channels; k++) {
      const col = offsets[l] + k;
      let gg = 0, bb = 0, gb = 0;
      for (let d = 0; d < zd; d++) {
        const sz = s[k * cd + d];
        const oz = o[k * cd + d];
        gg += sz * sz;
        bb += oz * oz;
        gb += sz * oz;
        gammaE[d * width + col] = s[k * cd + zd + d];
        betaE[d * width + col] = o[k * cd + zd + d];
      }
      gzz[col] = gg;
      bzz[col] = bb;
      gbz[col] = gb;
    }
  });
  return { ccbns, offsets, width, zDim: zd, gammaE, betaE, gzz, bzz, gbz };
}

/** Variance of one z component at a truncation: t² · Var(truncnorm(−2, 2)). */
export function latentVariance(truncation: number): number {
  return truncation * truncation * truncatedNormalVariance(2);
}

/**
 * The z-driven spread of (γ, β) per channel at a truncation, in the form the quadrature wants:
 * γ = μ_γ + σ_γ·X, β | γ = μ_β + ρσ_γ·X + N(0, σ²_{β|γ}), X ~ N(0, 1).
 */
export function latentSpread(t: ModulationTable, truncation: number) {
  const v = latentVariance(truncation);
  const sigmaG = new Float32Array(t.width);
  const slope = new Float32Array(t.width); // ρσ_γ = Cov/σ_γ
  const resid = new Float32Array(t.width); // σ²_{β|γ}
  for (let k = 0; k < t.width; k++) {
    const vg = v * t.gzz[k];
    const vb = v * t.bzz[k];
    const c = v * t.gbz[k];
    const sg = Math.sqrt(vg);
    sigmaG[k] = sg;
    if (vg > 1e-20) {
      slope[k] = c / sg;
      resid[k] = Math.max(0, vb - (c * c) / vg);
    } else {
      slope[k] = 0;
      resid[k] = vb;
    }
  }
  return { sigmaG, slope, resid, variance: v };
}

/** Embedding of each class vector: e = W_emb·y, [N, z_dim]. */
export function classEmbeddings(w: GeneratorWeights, zd: number, nc: number, classes: Float32Array[]): Float32Array {
  const e = new Float32Array(classes.length * zd);
  classes.forEach((y, b) => {
    for (let c = 0; c < nc; c++) {
      const yc = y[c];
      if (yc === 0) continue;
      for (let d = 0; d < zd; d++) e[b * zd + d] += w.embed[d * nc + c] * yc;
    }
  });
  return e;
}

/** Covariance [z_dim, z_dim] of the embeddings of all the model's classes (uniform over classes). */
export function embeddingCovariance(w: GeneratorWeights, zd: number, nc: number): Float64Array {
  const mean = new Float64Array(zd);
  for (let d = 0; d < zd; d++) {
    let s = 0;
    for (let c = 0; c < nc; c++) s += w.embed[d * nc + c];
    mean[d] = s / nc;
  }
  const cov = new Float64Array(zd * zd);
  for (let a = 0; a < zd; a++) {
    for (let b = a; b < zd; b++) {
      let s = 0;
      for (let c = 0; c < nc; c++) s += (w.embed[a * nc + c] - mean[a]) * (w.embed[b * nc + c] - mean[b]);
      cov[a * zd + b] = cov[b * zd + a] = s / nc;
    }
  }
  return cov;
}

/**
 * Split of each channel's modulation variance into its latent-driven and class-driven parts.
 * With x̂ ~ N(0, 1) independent of (γ, β), Var(γx̂ + β) over a source = Var γ + Var β, so
 *   latent = v(‖sᶻ‖² + ‖oᶻ‖²),   class = Var_y(sᵉ·e_y) + Var_y(oᵉ·e_y) = sᵉᵀΣ_e sᵉ + oᵉᵀΣ_e oᵉ.
 */
export function varianceSplit(t: ModulationTable, embedCov: Float64Array, truncation: number) {
  const v = latentVariance(truncation);
  const zd = t.zDim;
  const latent = new Float64Array(t.width);
  const cls = new Float64Array(t.width);
  const sv = new Float64Array(zd);
  const ov = new Float64Array(zd);
  for (let k = 0; k < t.width; k++) {
    for (let d = 0; d < zd; d++) {
      sv[d] = t.gammaE[d * t.width + k];
      ov[d] = t.betaE[d * t.width + k];
    }
    let q = 0;
    for (let a = 0; a < zd; a++) {
      let rs = 0, ro = 0;
      const row = a * zd;
      for (let b = 0; b < zd; b++) {
        rs += embedCov[row + b] * sv[b];
        ro += embedCov[row + b] * ov[b];
      }
      q += sv[a] * rs + ov[a] * ro;
    }
    latent[k] = v * (t.gzz[k] + t.bzz[k]);
    cls[k] = q;
  }
  return { latent, cls };
}
