// Two slower estimators that validate the weights-only awareness, both through the engine's
// per-channel inputs (nothing is rebuilt):
// - empirical: the measured mean post-ReLU activation of each channel in real forward passes;
// - ablation: the mean absolute change of the output image when one channel's post-ReLU activation is
//   zeroed (mul = 0 after its ReLU), averaged over samples, pixels and colour channels.
import type { Generator } from '../model/generator.ts';
import { sampleZ } from '../model/sampling.ts';

export interface EstimatorOptions {
  truncation?: number;
  /** samples per class */
  samples?: number;
  seed?: number;
  /** images per forward pass */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

function repeatClass(y: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * y.length);
  for (let i = 0; i < n; i++) out.set(y, i * y.length);
  return out;
}

export interface EmpiricalMoments {
  /** layer index → [classes × C]: measured E[h] over samples and positions */
  mean: Map<number, Float32Array>;
  /** layer index → [classes × C]: measured √E[h²] */
  rms: Map<number, Float32Array>;
}

/** Measured first and second moments of every channel's post-ReLU activation, for each class. */
export async function empiricalMoments(g: Generator, classes: Float32Array[], layers: number[], opts: EstimatorOptions = {}): Promise<EmpiricalMoments> {
  const t = opts.truncation ?? 1;
  const S = opts.samples ?? 32;
  const zd = g.config.z_dim;
  const mean = new Map<number, Float32Array>();
  const rms = new Map<number, Float32Array>();
  for (const i of layers) {
    mean.set(i, new Float32Array(classes.length * g.arch.ccbns[i].channels));
    rms.set(i, new Float32Array(classes.length * g.arch.ccbns[i].channels));
  }
  for (let c = 0; c < classes.length; c++) {
    const z = sampleZ(S, zd, t, (opts.seed ?? 0) + c);
    const cond = g.conditioning(z, repeatClass(classes[c], S), S);
    const { activations } = await g.forward(cond, { truncation: t, fetch: layers });
    for (const i of layers) {
      const spec = g.arch.ccbns[i];
      const C = spec.channels;
      const hw = spec.res * spec.res;
      const a = activations.get(i)!;
      const m1 = mean.get(i)!;
      const m2 = rms.get(i)!;
      for (let k = 0; k < C; k++) {
        let s1 = 0;
        let s2 = 0;
        for (let s = 0; s < S; s++) {
          const base = (s * C + k) * hw;
          for (let p = 0; p < hw; p++) {
            const v = a[base + p];
            s1 += v;
            s2 += v * v;
          }
        }
        m1[c * C + k] = s1 / (hw * S);
        m2[c * C + k] = Math.sqrt(s2 / (hw * S));
      }
    }
    opts.onProgress?.(c + 1, classes.length);
  }
  return { mean, rms };
}

/** Mean post-ReLU activation per channel for each class: layer index → [classes × C]. */
export async function empiricalActivation(g: Generator, classes: Float32Array[], layers: number[], opts: EstimatorOptions = {}) {
  return (await empiricalMoments(g, classes, layers, opts)).mean;
}

/** Ablation effect of every channel of one CCBN for each class: [classes × C]. */
export async function ablationEffect(g: Generator, classes: Float32Array[], layer: number, opts: EstimatorOptions = {}): Promise<Float32Array> {
  const t = opts.truncation ?? 1;
  const S = opts.samples ?? 8;
  const zd = g.config.z_dim;
  const C = g.arch.ccbns[layer].channels;
  const R = g.arch.resolution;
  const per = 3 * R * R;
  const batch = Math.max(S, opts.batch ?? 64);
  const channelsPerBatch = Math.max(1, Math.floor(batch / S));
  const effect = new Float32Array(classes.length * C);
  const total = classes.length * Math.ceil(C / channelsPerBatch);
  let done = 0;
  for (let c = 0; c < classes.length; c++) {
    const z = sampleZ(S, zd, t, (opts.seed ?? 0) + c);
    const base = await g.forward(g.conditioning(z, repeatClass(classes[c], S), S), { truncation: t });
    for (let k0 = 0; k0 < C; k0 += channelsPerBatch) {
      const kc = Math.min(C, k0 + channelsPerBatch) - k0;
      const n = kc * S;
      // sample s of channel k0+j sits at row j·S + s
      const zz = new Float32Array(n * zd);
      for (let j = 0; j < kc; j++) zz.set(z, j * S * zd);
      const cond = g.conditioning(zz, repeatClass(classes[c], n), n);
      const mul = new Float32Array(n * C).fill(1);
      for (let j = 0; j < kc; j++) for (let s = 0; s < S; s++) mul[(j * S + s) * C + k0 + j] = 0;
      const { images } = await g.forward(cond, { truncation: t, edits: new Map([[layer, { mul }]]) });
      for (let j = 0; j < kc; j++) {
        let sum = 0;
        for (let s = 0; s < S; s++) {
          const a = (j * S + s) * per;
          const b = s * per;
          for (let q = 0; q < per; q++) sum += Math.abs(images[a + q] - base.images[b + q]);
        }
        effect[c * C + k0 + j] = sum / (S * per);
      }
      opts.onProgress?.(++done, total);
    }
  }
  return effect;
}
