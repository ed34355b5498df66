// Channel awareness from the weights alone: for every CCBN layer, class and channel.
// See docs/method.md for the definitions and their derivation.
import * as ort from 'onnxruntime-node';
import type { CcbnSpec } from '../model/config.ts';
import type { Generator } from '../model/generator.ts';
import { checkTruncation } from '../model/generator.ts';
import { downstreamGains, downstreamModel, type DownstreamModel } from './downstream.ts';
import { gaussHermite } from './gaussian.ts';
import { expectationSession } from './graph.ts';
import { classEmbeddings, embeddingCovariance, latentSpread, modulationTable, latentVariance, type ModulationTable } from './modulation.ts';

/** 'expected': E over z as the model is sampled (default); 'zero': z = 0 (fastest). */
export type Variant = 'expected' | 'zero';
/**
 * What a channel's score measures (docs/method.md §3):
 * - 'activation': E[ReLU(γx̂ + β)], the expected post-ReLU activation (the paper's wording);
 * - 'rms': √E[ReLU(γx̂ + β)²], the activation's root mean square (what zeroing it removes);
 * - 'downstream': rms × the channel's mean-field gain to the image (the adopted default).
 */
export type Definition = 'downstream' | 'rms' | 'activation';
export const DEFINITIONS: Definition[] = ['downstream', 'rms', 'activation'];

export interface AwarenessOptions {
  truncation?: number;
  variant?: Variant;
  definition?: Definition;
  /** class vectors (one-hot or soft), default every class one-hot */
  classes?: Float32Array[];
  /** CCBN indices (Architecture.ccbns order), default all */
  layers?: number[];
  /** Gauss–Hermite nodes over the z-driven part of γ (expected variant), default 5 */
  quadrature?: number;
  /** latent share above which a channel counts as latent-oriented, default 0.5 */
  latentThreshold?: number;
  threads?: number;
}

export interface LayerAwareness {
  ccbn: CcbnSpec;
  channels: number;
  /** [classes × channels], the chosen definition */
  raw: Float32Array;
  /** raw normalised over the layer's channels (each row sums to 1) */
  relative: Float32Array;
  /** E[h], the expected post-ReLU activation [classes × channels] */
  activation: Float32Array;
  /** √E[h²] [classes × channels] */
  rms: Float32Array;
  /** share of the channel's modulation variance driven by z rather than the class [channels] */
  latentShare: Float32Array;
  /** 1 where the channel is latent-oriented (shared), 0 where class-oriented */
  latent: Uint8Array;
}

export interface Awareness {
  truncation: number;
  variant: Variant;
  definition: Definition;
  quadrature: number;
  latentThreshold: number;
  numClasses: number;
  layers: LayerAwareness[];
}

/** Per-generator state that does not depend on the request: weight tables, sessions, gains. */
interface Prepared {
  table: ModulationTable;
  downstream: DownstreamModel;
  ecov: Float64Array;
  sessions: Map<number, Promise<ort.InferenceSession>>;
}
const prepared = new WeakMap<Generator, Map<string, Prepared>>();

function prepare(g: Generator, layers: number[]): Prepared {
  let byLayers = prepared.get(g);
  if (!byLayers) prepared.set(g, (byLayers = new Map()));
  const key = layers.join(',');
  let p = byLayers.get(key);
  if (!p) {
    const specs = layers.map((i) => g.arch.ccbns[i]);
    p = {
      table: modulationTable(g.arch, g.weights, specs),
      downstream: downstreamModel(g.weights),
      ecov: embeddingCovariance(g.weights, g.config.z_dim, g.config.num_classes),
      sessions: new Map(),
    };
    byLayers.set(key, p);
  }
  return p;
}

function session(p: Prepared, K: number, threads?: number) {
  let s = p.sessions.get(K);
  if (!s) {
    const { nodes, weights } = K === 1 ? { nodes: new Float64Array([0]), weights: new Float64Array([1]) } : gaussHermite(K);
    s = expectationSession(p.table, nodes, weights, threads);
    p.sessions.set(K, s);
  }
  return s;
}

export function allClasses(numClasses: number): Float32Array[] {
  return Array.from({ length: numClasses }, (_, c) => {
    const v = new Float32Array(numClasses);
    v[c] = 1;
    return v;
  });
}

export async function computeAwareness(g: Generator, opts: AwarenessOptions = {}): Promise<Awareness> {
  const truncation = opts.truncation ?? 1;
  checkTruncation(truncation);
  const variant = opts.variant ?? 'expected';
  const definition = opts.definition ?? 'downstream';
  const latentThreshold = opts.latentThreshold ?? 0.5;
  const K = variant === 'zero' ? 1 : (opts.quadrature ?? 5);
  if (!Number.isInteger(K) || K < 1 || K > 64) throw new Error(`quadrature must be an integer in [1, 64], got ${K}`);
  const { z_dim: zd, num_classes: nc } = g.config;
  const layerIdx = opts.layers ?? g.arch.ccbns.map((c) => c.index);
  for (const i of layerIdx) if (!g.arch.ccbns[i]) throw new Error(`no CCBN ${i}`);
  const classes = opts.classes ?? allClasses(nc);
  const N = classes.length;
  const p = prepare(g, layerIdx);
  const t = p.table;
  const sess = await session(p, K, opts.threads);

  const spread = variant === 'zero'
    ? { sigmaG: new Float32Array(t.width), slope: new Float32Array(t.width), resid: new Float32Array(t.width) }
    : latentSpread(t, truncation);
  const emb = classEmbeddings(g.weights, zd, nc, classes);
  const mean = new Float32Array(N * t.width);
  const second = new Float32Array(N * t.width);
  const chunk = Math.max(1, Math.floor(4_000_000 / t.width));
  const fixed = {
    sigma_g: new ort.Tensor('float32', spread.sigmaG, [1, t.width]),
    slope: new ort.Tensor('float32', spread.slope, [1, t.width]),
    resid: new ort.Tensor('float32', spread.resid, [1, t.width]),
    ecov: new ort.Tensor('float32', Float32Array.from(p.ecov), [zd, zd]),
  };
  let classVarG: Float32Array | undefined;
  let classVarB: Float32Array | undefined;
  for (let s = 0; s < N; s += chunk) {
    const e = Math.min(N, s + chunk);
    const wanted = s === 0 ? ['mean', 'second', 'class_var_gamma', 'class_var_beta'] : ['mean', 'second'];
    const out = await sess.run({ ...fixed, emb: new ort.Tensor('float32', emb.subarray(s * zd, e * zd), [e - s, zd]) }, wanted);
    mean.set(out.mean.data as Float32Array, s * t.width);
    second.set(out.second.data as Float32Array, s * t.width);
    if (s === 0) {
      classVarG = out.class_var_gamma.data as Float32Array;
      classVarB = out.class_var_beta.data as Float32Array;
    }
  }

  // latent share of the modulation variance: v(‖sᶻ‖² + ‖oᶻ‖²) / (that + Var_y γ + Var_y β)
  const v = latentVariance(truncation);
  // mean-field gains to the image, for the mean class embedding (class-free)
  let gains: Float64Array[] | undefined;
  if (definition === 'downstream') {
    const meanEmb = classEmbeddings(g.weights, zd, nc, [new Float32Array(nc).fill(1 / nc)]);
    gains = downstreamGains(g.arch, g.weights, p.downstream, meanEmb, truncation);
  }

  const layers = layerIdx.map((ci, l): LayerAwareness => {
    const spec = g.arch.ccbns[ci];
    const C = spec.channels;
    const off = t.offsets[l];
    const activation = new Float32Array(N * C);
    const rms = new Float32Array(N * C);
    const raw = new Float32Array(N * C);
    const relative = new Float32Array(N * C);
    const gain = gains?.[ci];
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < C; k++) {
        const src = n * t.width + off + k;
        const a = Math.max(0, mean[src]);
        const r = Math.sqrt(Math.max(0, second[src]));
        activation[n * C + k] = a;
        rms[n * C + k] = r;
        const value = definition === 'activation' ? a : definition === 'rms' ? r : r * Math.sqrt(gain![k]);
        raw[n * C + k] = value;
        sum += value;
      }
      const inv = sum > 0 ? 1 / sum : 0;
      for (let k = 0; k < C; k++) relative[n * C + k] = raw[n * C + k] * inv;
    }
    const latentShare = new Float32Array(C);
    const latent = new Uint8Array(C);
    for (let k = 0; k < C; k++) {
      const lat = v * (t.gzz[off + k] + t.bzz[off + k]);
      const cls = Math.max(0, classVarG![off + k]) + Math.max(0, classVarB![off + k]);
      latentShare[k] = lat + cls > 0 ? lat / (lat + cls) : 0;
      latent[k] = latentShare[k] > latentThreshold ? 1 : 0;
    }
    return { ccbn: spec, channels: C, raw, relative, activation, rms, latentShare, latent };
  });
  return { truncation, variant, definition, quadrature: K, latentThreshold, numClasses: N, layers };
}

/** Row `cls` of a [classes × C] array. */
export function row(a: Float32Array, C: number, cls: number): Float32Array {
  return a.subarray(cls * C, (cls + 1) * C);
}

/**
 * The same layout with another estimator's scores (e.g. the ablation effect) in place of the weights-only
 * awareness, so that every analysis can be run on it; kinds and the other fields are kept.
 */
export function withScores(a: Awareness, scores: Map<number, Float32Array>): Awareness {
  const layers = a.layers.filter((L) => scores.has(L.ccbn.index)).map((L) => {
    const raw = scores.get(L.ccbn.index)!;
    const C = L.channels;
    const relative = new Float32Array(raw.length);
    for (let n = 0; n < a.numClasses; n++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += raw[n * C + k];
      for (let k = 0; k < C; k++) relative[n * C + k] = s > 0 ? raw[n * C + k] / s : 0;
    }
    return { ...L, raw, relative };
  });
  return { ...a, layers };
}
