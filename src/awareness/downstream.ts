// How strongly each CCBN channel's post-ReLU activation reaches the image: a mean-field gain,
// propagated backward from the output through the weights alone. A unit change in channel k of CCBN i
// moves the next convolution's outputs by W[:, k]; each of those is normalised by the next CCBN's stored
// σ, scaled by its γ and passes its ReLU with probability p = Φ(β/|γ|) (x̂ ~ N(0, 1)), and so on to the
// image. Signs along many paths are unrelated, so squared gains add:
//   G_i[k]² = Σ_m ‖W[m, k]‖² · (γ_m/σ_m)² · p_m · G_next[m]²
// Residual connections add the skip path's gain; attention is taken as identity (its γ is small).
// γ, β are those of a given class embedding at z = 0, or the mean embedding for a class-free gain.
import type { Architecture } from '../model/config.ts';
import { truncationStats } from '../model/conditioning.ts';
import type { GeneratorWeights, Weight } from '../model/weights.ts';
import { normCdf } from './gaussian.ts';

/** ‖W[m, k, :, :]‖² for every (m, k): [out, in]. */
function kernelEnergy(w: Weight): Float64Array {
  const kk = w.k * w.k;
  const e = new Float64Array(w.out * w.in);
  for (let i = 0; i < e.length; i++) {
    let s = 0;
    for (let j = 0; j < kk; j++) {
      const v = w.data[i * kk + j];
      s += v * v;
    }
    e[i] = s;
  }
  return e;
}

/** g_in[k] = Σ_m E[m, k] · g_out[m] (all squared quantities). */
function backThrough(energy: Float64Array, out: number, inn: number, gOut: Float64Array): Float64Array {
  const g = new Float64Array(inn);
  for (let m = 0; m < out; m++) {
    const gm = gOut[m];
    if (gm === 0) continue;
    const row = m * inn;
    for (let k = 0; k < inn; k++) g[k] += energy[row + k] * gm;
  }
  return g;
}

export interface DownstreamModel {
  /** squared kernel energies per GenBlock conv, and of conv_to_rgb's first three outputs */
  conv: Float64Array[][];
  rgb: Float64Array;
}

export function downstreamModel(w: GeneratorWeights): DownstreamModel {
  const rgbE = kernelEnergy(w.toRgb);
  const C = w.toRgb.in;
  const rgb = new Float64Array(C);
  for (let o = 0; o < 3; o++) for (let k = 0; k < C; k++) rgb[k] += rgbE[o * C + k];
  return { conv: w.blocks.map((b) => b.conv.map(kernelEnergy)), rgb };
}

/**
 * Squared gain G² of every CCBN's post-ReLU channels to the image, [ccbn index] → [C], for one class
 * embedding e (length z_dim) at z = 0 and the statistics of a truncation.
 */
export function downstreamGains(arch: Architecture, w: GeneratorWeights, dm: DownstreamModel, e: Float32Array, truncation: number): Float64Array[] {
  const { z_dim: zd, eps, n_stats } = arch.config;
  const cd = 2 * zd;
  /** (γ/σ)²·p for the input channels of CCBN (b, j) */
  const passGain = (b: number, j: number): Float64Array => {
    const bn = w.blocks[b].bn[j];
    const { variance } = truncationStats(bn.means, bn.vars, n_stats, truncation);
    const C = bn.channels;
    const out = new Float64Array(C);
    for (let k = 0; k < C; k++) {
      let g = 1, beta = 0;
      for (let d = 0; d < zd; d++) {
        g += bn.scale.data[k * cd + zd + d] * e[d];
        beta += bn.offset.data[k * cd + zd + d] * e[d];
      }
      const p = normCdf(beta / Math.max(Math.abs(g), 1e-12));
      out[k] = ((g * g) / (variance[k] + eps)) * p;
    }
    return out;
  };
  const fb = w.finalBn;
  const { variance: fv } = truncationStats(fb.means, fb.vars, n_stats, truncation);
  let gOut: Float64Array = new Float64Array(arch.outChannels);
  for (let k = 0; k < gOut.length; k++) {
    const p = normCdf(fb.bias[k] / Math.max(Math.abs(fb.weight[k]), 1e-12));
    gOut[k] = ((fb.weight[k] * fb.weight[k]) / (fv[k] + eps)) * p * dm.rgb[k];
  }
  const gains: Float64Array[] = new Array(arch.ccbns.length);
  for (let bi = arch.blocks.length - 1; bi >= 0; bi--) {
    const spec = arch.blocks[bi];
    const E = dm.conv[bi];
    const h3 = backThrough(E[3], spec.cout, spec.mid, gOut);
    const h2 = backThrough(E[2], spec.mid, spec.mid, mul(passGain(bi, 3), h3));
    const h1 = backThrough(E[1], spec.mid, spec.mid, mul(passGain(bi, 2), h2));
    const h0 = backThrough(E[0], spec.mid, spec.cin, mul(passGain(bi, 1), h1));
    const first = bi * 4;
    gains[first] = h0;
    gains[first + 1] = h1;
    gains[first + 2] = h2;
    gains[first + 3] = h3;
    const gin = mul(passGain(bi, 0), h0);
    for (let k = 0; k < spec.cout; k++) gin[k] += gOut[k]; // skip path keeps the first cout channels
    gOut = gin;
  }
  return gains;
}

function mul(a: Float64Array, b: Float64Array): Float64Array {
  const o = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) o[i] = a[i] * b[i];
  return o;
}
