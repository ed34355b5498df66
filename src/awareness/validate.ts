// How well does each awareness definition rank channels like the ablation does? For every CCBN layer
// and class: Spearman correlation between each predictor and the ablation effect measured with
// `samples` images per class. Predictors: the weights-only definitions (both variants), the empirical
// estimator, and a cheap ablation (one image per class, other seeds) as the reference of what a
// measured estimator reaches.
import type { Generator } from '../model/generator.ts';
import { spearman } from './analyses.ts';
import { computeAwareness, DEFINITIONS, allClasses, gainsFor, type Definition, type Variant } from './compute.ts';
import { ablationEffect, empiricalMoments } from './estimators.ts';
import { taylorEffect } from './taylor.ts';

export interface ValidationOptions {
  truncation?: number;
  /** images per class for the reference ablation */
  samples?: number;
  /** images per class for the empirical estimator */
  empiricalSamples?: number;
  /** CCBN indices (default all) */
  layers?: number[];
  seed?: number;
  /** include a 1-image ablation as a predictor */
  cheapAblation?: boolean;
  onProgress?: (layer: number, done: number, total: number) => void;
}

export interface LayerValidation {
  layer: string;
  index: number;
  block: number;
  j: number;
  channels: number;
  /** predictor → mean Spearman over classes */
  spearman: Record<string, number>;
  /** seconds spent on the reference ablation of this layer */
  ablationSeconds: number;
  /** split-half reliability of the reference (Spearman–Brown corrected), and its square root: the most a
   *  perfect predictor of the true ablation effect can reach against this finite-sample reference */
  reliability: number;
  ceiling: number;
}

export interface Validation {
  truncation: number;
  samples: number;
  empiricalSamples: number;
  layers: LayerValidation[];
  /** predictor → mean over layers (all CCBNs), and over the blocks' first CCBNs only */
  mean: Record<string, number>;
  meanBn0: Record<string, number>;
  /** mean over layers of LayerValidation.ceiling (all CCBNs, blocks' first CCBNs) */
  ceiling: number;
  ceilingBn0: number;
  /** seconds: weights-only awareness (all layers, all classes, per variant), empirical, cheap ablation */
  cost: Record<string, number>;
  /** the reference ablation effect, CCBN index → [classes × C] */
  ablation: Map<number, Float32Array>;
}

/** Spearman correlation of two [classes × C] arrays over channels, averaged over classes. */
function meanSpearman(a: Float32Array, b: Float32Array, C: number, nc: number): number {
  let s = 0;
  for (let c = 0; c < nc; c++) s += spearman(a.subarray(c * C, (c + 1) * C), b.subarray(c * C, (c + 1) * C));
  return s / nc;
}

export async function validateAwareness(g: Generator, opts: ValidationOptions = {}): Promise<Validation> {
  const t = opts.truncation ?? 1;
  const S = opts.samples ?? 8;
  const SE = opts.empiricalSamples ?? 32;
  const seed = opts.seed ?? 0;
  const layers = opts.layers ?? g.arch.ccbns.map((c) => c.index);
  const nc = g.config.num_classes;
  const classes = allClasses(nc);
  const cost: Record<string, number> = {};
  const predictors = new Map<string, Map<number, Float32Array>>();
  for (const variant of ['expected', 'zero'] as Variant[]) {
    for (const definition of DEFINITIONS as Definition[]) {
      const t0 = performance.now();
      const a = await computeAwareness(g, { truncation: t, variant, definition, layers });
      cost[`${definition}/${variant}`] = (performance.now() - t0) / 1000;
      predictors.set(`${definition}/${variant}`, new Map(a.layers.map((L) => [L.ccbn.index, L.raw])));
    }
  }
  let t0 = performance.now();
  const moments = await empiricalMoments(g, classes, layers, { truncation: t, samples: SE, seed: seed + 7919 });
  cost.empirical = (performance.now() - t0) / 1000;
  predictors.set('empirical', moments.mean);
  predictors.set('empirical-rms', moments.rms);
  // first-order (Taylor) estimate of the ablation effect from backward passes (src/awareness/taylor.ts)
  t0 = performance.now();
  predictors.set('taylor', await taylorEffect(g, classes, layers, { truncation: t, samples: SE, probes: 8, seed: seed + 7919 }));
  cost.taylor = (performance.now() - t0) / 1000;
  // measured √E[h²] times the weights-only gain to the image: class-free (mean embedding) and per class
  t0 = performance.now();
  const meanGain = gainsFor(g, t);
  const classGain = classes.map((y) => gainsFor(g, t, y));
  const times = (perClass: boolean) => new Map(layers.map((li) => {
    const C = g.arch.ccbns[li].channels;
    const r = moments.rms.get(li)!;
    const out = new Float32Array(r.length);
    for (let c = 0; c < nc; c++) {
      const gain = perClass ? classGain[c][li] : meanGain[li];
      for (let k = 0; k < C; k++) out[c * C + k] = r[c * C + k] * Math.sqrt(gain[k]);
    }
    return [li, out];
  }));
  predictors.set('empirical-rms×gain', times(false));
  predictors.set('empirical-rms×class-gain', times(true));
  cost['gains'] = (performance.now() - t0) / 1000;
  const cheap = new Map<number, Float32Array>();
  cost['ablation-1'] = 0;

  const out: LayerValidation[] = [];
  const ablation = new Map<number, Float32Array>();
  for (const li of layers) {
    const spec = g.arch.ccbns[li];
    const C = spec.channels;
    t0 = performance.now();
    // the reference in two independent halves: their agreement tells how precise the reference is
    const half = Math.max(1, Math.floor(S / 2));
    const rest = Math.max(1, S - half);
    const refA = await ablationEffect(g, classes, li, { truncation: t, samples: half, seed, onProgress: (d, n) => opts.onProgress?.(li, d / 2, n) });
    const refB = await ablationEffect(g, classes, li, { truncation: t, samples: rest, seed: seed + 15485863, onProgress: (d, n) => opts.onProgress?.(li, (n + d) / 2, n) });
    const ref = new Float32Array(refA.length);
    for (let i = 0; i < ref.length; i++) ref[i] = (half * refA[i] + rest * refB[i]) / (half + rest);
    const ablationSeconds = (performance.now() - t0) / 1000;
    const rHalf = meanSpearman(refA, refB, C, nc);
    // Spearman–Brown: reliability of the full reference; √reliability bounds what a perfect predictor of the
    // true (infinite-sample) effect can reach against this reference
    const reliability = rHalf > 0 ? (2 * rHalf) / (1 + rHalf) : 0;
    ablation.set(li, ref);
    if (opts.cheapAblation ?? true) {
      t0 = performance.now();
      cheap.set(li, await ablationEffect(g, classes, li, { truncation: t, samples: 1, seed: seed + 104729 }));
      cost['ablation-1'] += (performance.now() - t0) / 1000;
    }
    const sp: Record<string, number> = {};
    const all = new Map(predictors);
    if (cheap.has(li)) all.set('ablation-1', cheap);
    for (const [name, values] of all) {
      sp[name] = meanSpearman(values.get(li)!, ref, C, nc);
    }
    out.push({ layer: spec.name, index: li, block: spec.block, j: spec.j, channels: C, spearman: sp, ablationSeconds, reliability, ceiling: Math.sqrt(reliability) });
  }
  const avg = (rows: LayerValidation[]) => {
    const m: Record<string, number> = {};
    for (const k of Object.keys(rows[0]?.spearman ?? {})) m[k] = rows.reduce((s, r) => s + r.spearman[k], 0) / rows.length;
    return m;
  };
  const bn0 = out.filter((r) => r.j === 0);
  const meanOf = (rows: LayerValidation[]) => rows.reduce((s, r) => s + r.ceiling, 0) / Math.max(1, rows.length);
  return { truncation: t, samples: S, empiricalSamples: SE, layers: out, mean: avg(out), meanBn0: avg(bn0), ceiling: meanOf(out), ceilingBn0: meanOf(bn0), cost, ablation };
}
