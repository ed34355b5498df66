// How well does each awareness definition rank channels like the ablation does? For every CCBN layer
// and class: Spearman correlation between each predictor and the ablation effect measured with
// `samples` images per class. Predictors: the weights-only definitions (both variants), the empirical
// estimator, and a cheap ablation (one image per class, other seeds) as the reference of what a
// measured estimator reaches.
import type { Generator } from '../model/generator.ts';
import { spearman } from './analyses.ts';
import { computeAwareness, DEFINITIONS, allClasses, type Definition, type Variant } from './compute.ts';
import { ablationEffect, empiricalActivation } from './estimators.ts';

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
}

export interface Validation {
  truncation: number;
  samples: number;
  empiricalSamples: number;
  layers: LayerValidation[];
  /** predictor → mean over layers (all CCBNs), and over the blocks' first CCBNs only */
  mean: Record<string, number>;
  meanBn0: Record<string, number>;
  /** seconds: weights-only awareness (all layers, all classes, per variant), empirical, cheap ablation */
  cost: Record<string, number>;
  /** the reference ablation effect, CCBN index → [classes × C] */
  ablation: Map<number, Float32Array>;
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
  predictors.set('empirical', await empiricalActivation(g, classes, layers, { truncation: t, samples: SE, seed: seed + 7919 }));
  cost.empirical = (performance.now() - t0) / 1000;
  const cheap = new Map<number, Float32Array>();
  cost['ablation-1'] = 0;

  const out: LayerValidation[] = [];
  const ablation = new Map<number, Float32Array>();
  for (const li of layers) {
    const spec = g.arch.ccbns[li];
    const C = spec.channels;
    t0 = performance.now();
    const ref = await ablationEffect(g, classes, li, { truncation: t, samples: S, seed, onProgress: (d, n) => opts.onProgress?.(li, d, n) });
    const ablationSeconds = (performance.now() - t0) / 1000;
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
      const v = values.get(li)!;
      let s = 0;
      for (let c = 0; c < nc; c++) s += spearman(v.subarray(c * C, (c + 1) * C), ref.subarray(c * C, (c + 1) * C));
      sp[name] = s / nc;
    }
    out.push({ layer: spec.name, index: li, block: spec.block, j: spec.j, channels: C, spearman: sp, ablationSeconds });
  }
  const avg = (rows: LayerValidation[]) => {
    const m: Record<string, number> = {};
    for (const k of Object.keys(rows[0]?.spearman ?? {})) m[k] = rows.reduce((s, r) => s + r.spearman[k], 0) / rows.length;
    return m;
  };
  return { truncation: t, samples: S, empiricalSamples: SE, layers: out, mean: avg(out), meanBn0: avg(out.filter((r) => r.j === 0)), cost, ablation };
}
