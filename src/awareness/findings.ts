// The paper's three findings as numbers on one model:
// 1. a subset of channels serves a class: how many channels hold `share` of its awareness;
// 2. similar classes share channels: top-channel overlap and cosine within class families vs across;
// 3. some channels follow z and serve every class: latent-oriented channels per layer.
import { coreChannels, cosineMatrix, overlapMatrix, sharedChannels } from './analyses.ts';
import type { Awareness } from './compute.ts';

export interface LayerFindings {
  layer: string;
  block: number;
  j: number;
  channels: number;
  /** mean, min, max over classes of the core set size for `share` */
  core: { mean: number; min: number; max: number; fraction: number };
  /** top-k overlap and cosine, averaged over within-family pairs, across-family pairs, other pairs */
  overlap: { within: number; across: number; others: number };
  cosine: { within: number; across: number; others: number };
  latentChannels: number;
  /** channels in the core set of ≥ 90% of the classes */
  sharedChannels: number;
}

export interface Findings {
  share: number;
  topK: string;
  families: Record<string, number[]>;
  layers: LayerFindings[];
  summary: {
    coreFraction: number;
    overlapWithin: number;
    overlapAcross: number;
    cosineWithin: number;
    cosineAcross: number;
    latentChannels: number;
    totalChannels: number;
  };
}

type PairKind = 'within' | 'across' | 'others';

function pairKind(a: number, b: number, familyOf: Map<number, string>): PairKind {
  const fa = familyOf.get(a);
  const fb = familyOf.get(b);
  if (fa !== undefined && fa === fb) return 'within';
  if (fa !== undefined && fb !== undefined) return 'across';
  return 'others';
}

function pairMeans(m: Float32Array, N: number, familyOf: Map<number, string>) {
  const sum = { within: 0, across: 0, others: 0 };
  const n = { within: 0, across: 0, others: 0 };
  for (let a = 0; a < N; a++) {
    for (let b = a + 1; b < N; b++) {
      const k = pairKind(a, b, familyOf);
      sum[k] += m[a * N + b];
      n[k]++;
    }
  }
  return { within: sum.within / (n.within || 1), across: sum.across / (n.across || 1), others: sum.others / (n.others || 1) };
}

/** `topFraction` of each layer's channels (at least 3) define the top-k overlap. */
export function computeFindings(a: Awareness, families: Record<string, number[]>, share = 0.8, topFraction = 0.1): Findings {
  const N = a.numClasses;
  const familyOf = new Map<number, string>();
  for (const [name, members] of Object.entries(families)) for (const c of members) familyOf.set(c, name);
  const layers = a.layers.map((L): LayerFindings => {
    const C = L.channels;
    const sizes = Array.from({ length: N }, (_, c) => coreChannels(L.raw, C, c, share).length);
    const k = Math.max(3, Math.round(topFraction * C));
    let latent = 0;
    for (const v of L.latent) latent += v;
    return {
      layer: L.ccbn.name, block: L.ccbn.block, j: L.ccbn.j, channels: C,
      core: { mean: sizes.reduce((s, v) => s + v, 0) / N, min: Math.min(...sizes), max: Math.max(...sizes), fraction: sizes.reduce((s, v) => s + v, 0) / N / C },
      overlap: pairMeans(overlapMatrix(L.raw, C, N, k), N, familyOf),
      cosine: pairMeans(cosineMatrix(L.relative, C, N), N, familyOf),
      latentChannels: latent,
      sharedChannels: sharedChannels(L.raw, C, N, share, 0.9).shared.length,
    };
  });
  const mean = (f: (l: LayerFindings) => number) => layers.reduce((s, l) => s + f(l), 0) / layers.length;
  return {
    share, topK: `${topFraction * 100}% of each layer's channels (at least 3)`, families, layers,
    summary: {
      coreFraction: mean((l) => l.core.fraction),
      overlapWithin: mean((l) => l.overlap.within),
      overlapAcross: mean((l) => l.overlap.across),
      cosineWithin: mean((l) => l.cosine.within),
      cosineAcross: mean((l) => l.cosine.across),
      latentChannels: layers.reduce((s, l) => s + l.latentChannels, 0),
      totalChannels: layers.reduce((s, l) => s + l.channels, 0),
    },
  };
}
