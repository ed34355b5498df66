// Channel awareness from the weights alone: for every CCBN layer, class and channel.
// See docs/method.md for the definitions and their derivation.
//
// Two engines compute the same quantities: an onnxruntime graph (graph.ts) for large requests (a GEMM
// for the class means, then vectorised elementwise work in cache-sized chunks of classes, each chunk's
// per-layer results written straight into the output arrays), and a plain TypeScript kernel (kernel.ts)
// for a few classes, where a runtime call costs more than the arithmetic. They agree to float32 rounding
// except deep in the lower tail (r = m/s ≪ 0), where the float32 graph's m·Φ + s·φ cancels (~1e-7·|m|
// absolute in E[h], ~3e-4·|m| in √E[h²]) and the kernel stays accurate relative to the value; such
// channels are far below the layer's largest.
// Everything that does not depend on the request is computed once per generator and kept: the weight
// tables, the class-driven variance, the downstream gains and the z-spread per truncation, and — for the
// TypeScript engine — the class embedding folded into the modulation weights (μ_γ − 1 and μ_β of every
// class, when that fits in memory).
import * as ort from 'onnxruntime-node';
import type { CcbnSpec } from '../model/config.ts';
import type { Generator } from '../model/generator.ts';
import { checkTruncation } from '../model/generator.ts';
import { downstreamGains, downstreamModel, type DownstreamModel } from './downstream.ts';
import { gaussHermite } from './gaussian.ts';
import { classVariance, expectationSession, modulationMeanSession, S2_FLOOR } from './graph.ts';
import { channelMoments } from './kernel.ts';
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
  /**
   * 'auto' (default): the TypeScript kernel for small requests, onnxruntime for large ones. The two agree
   * to float32 rounding; forcing one is for tests and benchmarks.
   */
  engine?: 'auto' | 'onnxruntime' | 'typescript';
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
  /** a weights-only definition, or 'taylor' when the scores are the measured first-order ablation estimate */
  definition: Definition | 'taylor';
  quadrature: number;
  latentThreshold: number;
  numClasses: number;
  layers: LayerAwareness[];
}

/** z-spread of (γ, β) per channel at one truncation; resid includes the s² floor of graph.ts. */
interface Spread {
  sigmaG: Float32Array;
  slope: Float32Array;
  resid: Float32Array;
}

/** Per-generator state that does not depend on the request. */
interface ModelState {
  downstream?: DownstreamModel;
  ecov?: Float64Array;
  /** truncation → squared gain of every CCBN's channels (class-free) */
  gains: Map<number, Float64Array[]>;
  byLayers: Map<string, Prepared>;
}

/** State for one list of CCBN layers. */
interface Prepared {
  table: ModulationTable;
  classVar?: Promise<{ gamma: Float32Array; beta: Float32Array }>;
  /** `${variant}/${truncation}` → spread */
  spreads: Map<string, Spread>;
  /** `${definition}/${truncation}` → per-column raw factor (√gain or 1) */
  scales: Map<string, Float32Array>;
  /** Sᵉ, Oᵉ of each layer as [z_dim, C] arrays (the onnxruntime engine's inputs) */
  perLayer?: { gamma: Float32Array; beta: Float32Array }[];
  /** `${truncation}/${threshold}` → latent share and kind per column */
  kinds: Map<string, { share: Float32Array; latent: Uint8Array }>;
  /** Sᵉ, Oᵉ transposed to [width, z_dim] (rows contiguous for the TypeScript GEMV) */
  transposed?: { gamma: Float32Array; beta: Float32Array };
  /** (μ_γ − 1) and μ_β of every one-hot class, [num_classes × width]; false: too large to keep */
  fold?: Promise<{ gamma: Float32Array; beta: Float32Array }> | false;
}

const states = new WeakMap<Generator, ModelState>();
/** Keep the folded class table only up to this many values per array (2 × 32 MiB). */
const FOLD_LIMIT = 1 << 23;
/**
 * The TypeScript engine takes requests up to about this much work, counted in (class, channel, node)
 * evaluations (~10 ns each), plus z_dim/8 of them per (class, channel) when the class means need a GEMV:
 * up to ~10 ms, where onnxruntime's per-run and per-layer overheads are comparable.
 */
const TS_LIMIT = 1 << 20;
/** Classes per onnxruntime run: intermediates of about this many values stay in cache. */
const CHUNK_VALUES = 1 << 18;

function modelState(g: Generator): ModelState {
  let s = states.get(g);
  if (!s) states.set(g, (s = { gains: new Map(), byLayers: new Map() }));
  return s;
}

function prepare(g: Generator, layers: number[]): Prepared {
  const ms = modelState(g);
  const key = layers.join(',');
  let p = ms.byLayers.get(key);
  if (!p) {
    const specs = layers.map((i) => g.arch.ccbns[i]);
    p = { table: modulationTable(g.arch, g.weights, specs), spreads: new Map(), scales: new Map(), kinds: new Map() };
    ms.byLayers.set(key, p);
  }
  return p;
}

const rules = new Map<number, { nodes: Float64Array; weights: Float64Array }>();
function rule(K: number) {
  let r = rules.get(K);
  if (!r) rules.set(K, (r = K === 1 ? { nodes: new Float64Array([0]), weights: new Float64Array([1]) } : gaussHermite(K)));
  return r;
}

function spreadFor(p: Prepared, variant: Variant, truncation: number): Spread {
  const key = `${variant}/${truncation}`;
  let s = p.spreads.get(key);
  if (!s) {
    const W = p.table.width;
    const sp = variant === 'zero'
      ? { sigmaG: new Float32Array(W), slope: new Float32Array(W), resid: new Float32Array(W) }
      : latentSpread(p.table, truncation);
    const resid = new Float32Array(W);
    for (let k = 0; k < W; k++) resid[k] = sp.resid[k] + S2_FLOOR;
    s = { sigmaG: sp.sigmaG, slope: sp.slope, resid };
    p.spreads.set(key, s);
  }
  return s;
}

/**
 * Squared mean-field gains to the image of every CCBN's channels (src/awareness/downstream.ts): class-free
 * (the mean class embedding, cached per truncation) or, given a class vector y, for that class.
 */
export function gainsFor(g: Generator, truncation: number, y?: Float32Array): Float64Array[] {
  const ms = modelState(g);
  const { z_dim: zd, num_classes: nc } = g.config;
  ms.downstream ??= downstreamModel(g.weights);
  const gainsOf = (v: Float32Array) => downstreamGains(g.arch, g.weights, ms.downstream!, classEmbeddings(g.weights, zd, nc, [v]), truncation);
  if (y) return gainsOf(y);
  let gains = ms.gains.get(truncation);
  if (!gains) {
    gains = gainsOf(new Float32Array(nc).fill(1 / nc));
    ms.gains.set(truncation, gains);
  }
  return gains;
}

/** Factor turning the base quantity (E[h] or √E[h²]) into the raw score, per column of the table. */
function scaleFor(g: Generator, p: Prepared, definition: Definition, truncation: number): Float32Array | undefined {
  if (definition !== 'downstream') return undefined;
  const key = `${definition}/${truncation}`;
  let s = p.scales.get(key);
  if (!s) {
    const gains = gainsFor(g, truncation);
    s = new Float32Array(p.table.width);
    p.table.ccbns.forEach((spec, l) => {
      const G = gains[spec.index];
      for (let k = 0; k < spec.channels; k++) s![p.table.offsets[l] + k] = Math.sqrt(G[k]);
    });
    p.scales.set(key, s);
  }
  return s;
}

function classVarFor(g: Generator, p: Prepared, threads?: number) {
  if (!p.classVar) {
    const ms = modelState(g);
    ms.ecov ??= embeddingCovariance(g.weights, g.config.z_dim, g.config.num_classes);
    p.classVar = classVariance(p.table, ms.ecov, threads);
  }
  return p.classVar;
}

/** Latent share and kind of every channel of every layer (class-free): computed once, handed out as copies. */
function kindsFor(p: Prepared, classVar: { gamma: Float32Array; beta: Float32Array }, truncation: number, threshold: number) {
  const key = `${truncation}/${threshold}`;
  let kinds = p.kinds.get(key);
  if (!kinds) {
    // latent share of the modulation variance: v(‖sᶻ‖² + ‖oᶻ‖²) / (that + Var_y γ + Var_y β)
    const t = p.table;
    const v = latentVariance(truncation);
    const share = new Float32Array(t.width);
    const latent = new Uint8Array(t.width);
    for (let k = 0; k < t.width; k++) {
      const lat = v * (t.gzz[k] + t.bzz[k]);
      const cls = Math.max(0, classVar.gamma[k]) + Math.max(0, classVar.beta[k]);
      share[k] = lat + cls > 0 ? lat / (lat + cls) : 0;
      latent[k] = share[k] > threshold ? 1 : 0;
    }
    p.kinds.set(key, (kinds = { share, latent }));
  }
  return kinds;
}

function foldFor(g: Generator, p: Prepared, threads?: number) {
  if (p.fold === undefined) {
    const { z_dim: zd, num_classes: nc } = g.config;
    if (nc * p.table.width > FOLD_LIMIT) p.fold = false;
    else {
      p.fold = (async () => {
        const s = await modulationMeanSession(p.table, threads);
        try {
          const out = await s.run({ emb: new ort.Tensor('float32', classEmbeddings(g.weights, zd, nc, allClasses(nc)), [nc, zd]) });
          return { gamma: out.mu_gamma_e.data as Float32Array, beta: out.mu_beta.data as Float32Array };
        } finally {
          await s.release();
        }
      })();
    }
  }
  return p.fold;
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
  const nc = g.config.num_classes;
  const layerIdx = opts.layers ?? g.arch.ccbns.map((c) => c.index);
  for (const i of layerIdx) if (!g.arch.ccbns[i]) throw new Error(`no CCBN ${i}`);
  const classes = opts.classes ?? allClasses(nc);
  for (const y of classes) if (y.length !== nc) throw new Error(`class vectors must hold ${nc} values, got ${y.length}`);
  const N = classes.length;
  const p = prepare(g, layerIdx);
  const t = p.table;
  const spread = spreadFor(p, variant, truncation);
  const scale = scaleFor(g, p, definition, truncation);
  const classVar = await classVarFor(g, p, opts.threads);

  const outs = layerIdx.map((ci) => {
    const n = N * g.arch.ccbns[ci].channels;
    return { raw: new Float32Array(n), relative: new Float32Array(n), activation: new Float32Array(n), rms: new Float32Array(n) };
  });
  const engine = opts.engine ?? 'auto';
  if (engine !== 'auto' && engine !== 'onnxruntime' && engine !== 'typescript') throw new Error(`unknown engine "${engine}"`);
  const foldable = nc * t.width <= FOLD_LIMIT;
  const useTs = engine === 'typescript' || (engine === 'auto' && N * t.width * (K + (foldable ? 1 : t.zDim / 8)) <= TS_LIMIT);
  if (N > 0) {
    if (useTs) await computeTs(g, p, classes, spread, scale, K, definition, outs, opts.threads);
    else await computeOrt(p, classes, g, spread, scale, K, definition, outs, opts.threads);
  }

  const kinds = kindsFor(p, classVar, truncation, latentThreshold);
  const layers = layerIdx.map((ci, l): LayerAwareness => {
    const spec = g.arch.ccbns[ci];
    const off = t.offsets[l];
    const C = spec.channels;
    return { ccbn: spec, channels: C, ...outs[l], latentShare: kinds.share.slice(off, off + C), latent: kinds.latent.slice(off, off + C) };
  });
  return { truncation, variant, definition, quadrature: K, latentThreshold, numClasses: N, layers };
}

type Outs = { raw: Float32Array; relative: Float32Array; activation: Float32Array; rms: Float32Array }[];

/** One onnxruntime session per rule and raw-score form; the layer's weights are inputs, so any model can use it. */
const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** onnxruntime: layer by layer, chunks of classes through one graph; outputs land in rows of `outs`. */
async function computeOrt(p: Prepared, classes: Float32Array[], g: Generator, spread: Spread, scale: Float32Array | undefined,
  K: number, definition: Definition, outs: Outs, threads?: number) {
  const t = p.table;
  const zd = t.zDim;
  const N = classes.length;
  const base = definition === 'activation' ? 'activation' : 'rms';
  const key = `${K}/${base}/${scale ? 1 : 0}/${threads ?? 0}`;
  let sp = sessions.get(key);
  if (!sp) {
    const r = rule(K);
    sp = expectationSession(r.nodes, r.weights, { threads, base, scaled: !!scale });
    sessions.set(key, sp);
  }
  const session = await sp;
  const emb = classEmbeddings(g.weights, zd, g.config.num_classes, classes);
  const weights = (p.perLayer ??= splitLayers(t));
  for (let l = 0; l < t.ccbns.length; l++) {
    const C = t.ccbns[l].channels;
    const off = t.offsets[l];
    const vec = (a: Float32Array) => new ort.Tensor('float32', a.subarray(off, off + C), [1, C]);
    const feeds: Record<string, ort.Tensor> = {
      gamma_e: new ort.Tensor('float32', weights[l].gamma, [zd, C]),
      beta_e: new ort.Tensor('float32', weights[l].beta, [zd, C]),
      sigma_g: vec(spread.sigmaG),
      slope: vec(spread.slope),
      resid: vec(spread.resid),
    };
    if (scale) feeds.scale = vec(scale);
    const rows = Math.max(1, Math.min(N, Math.floor(CHUNK_VALUES / C)));
    const o = outs[l];
    for (let s = 0; s < N; s += rows) {
      const e = Math.min(N, s + rows);
      const out = (a: Float32Array) => new ort.Tensor('float32', a.subarray(s * C, e * C), [e - s, C]);
      feeds.emb = new ort.Tensor('float32', emb.subarray(s * zd, e * zd), [e - s, zd]);
      await session.run(feeds, { activation: out(o.activation), rms: out(o.rms), raw: out(o.raw), relative: out(o.relative) });
    }
  }
}

/** The class parts of every layer's weights as their own [z_dim, C] arrays. */
function splitLayers(t: ModulationTable) {
  return t.ccbns.map((spec, l) => {
    const C = spec.channels;
    const off = t.offsets[l];
    const gamma = new Float32Array(t.zDim * C);
    const beta = new Float32Array(t.zDim * C);
    for (let d = 0; d < t.zDim; d++) {
      gamma.set(t.gammaE.subarray(d * t.width + off, d * t.width + off + C), d * C);
      beta.set(t.betaE.subarray(d * t.width + off, d * t.width + off + C), d * C);
    }
    return { gamma, beta };
  });
}

/** TypeScript: class means from the folded table (or a GEMV), then kernel.ts, then the scores. */
async function computeTs(g: Generator, p: Prepared, classes: Float32Array[], spread: Spread, scale: Float32Array | undefined,
  K: number, definition: Definition, outs: Outs, threads?: number) {
  const t = p.table;
  const W = t.width;
  const zd = t.zDim;
  const nc = g.config.num_classes;
  const { nodes, weights } = rule(K);
  const fold = await foldFor(g, p, threads);
  // no await from here on: the scratch buffers are this call's until it returns
  const maxC = Math.max(...t.ccbns.map((c) => c.channels));
  const { mg, mb, acc, mean, second } = scratch(W, maxC);
  for (let n = 0; n < classes.length; n++) {
    const y = classes[n];
    let nnz = 0;
    let last = 0;
    for (let c = 0; c < nc; c++) {
      if (y[c] !== 0) {
        nnz++;
        last = c;
      }
    }
    let G: Float32Array = mg, B: Float32Array = mb, base = 0;
    if (fold && nnz === 1 && y[last] === 1) {
      // one-hot: a row of the folded table, (Sᵉ W_emb)[c] and (Oᵉ W_emb)[c]
      G = fold.gamma;
      B = fold.beta;
      base = last * W;
    } else if (fold && nnz <= zd / 4) {
      // μ_γ − 1 = Σ_c y_c (Sᵉ W_emb)[c],  μ_β = Σ_c y_c (Oᵉ W_emb)[c]
      acc.fill(0);
      for (let c = 0; c < nc; c++) {
        const yc = y[c];
        if (yc === 0) continue;
        const o = c * W;
        for (let k = 0; k < W; k++) {
          acc[k] += yc * fold.gamma[o + k];
          acc[W + k] += yc * fold.beta[o + k];
        }
      }
      for (let k = 0; k < W; k++) {
        mg[k] = acc[k];
        mb[k] = acc[W + k];
      }
    } else {
      const emb = classEmbeddings(g.weights, zd, nc, [y]);
      const T = (p.transposed ??= transpose(t));
      gemv(T.gamma, emb, W, zd, mg);
      gemv(T.beta, emb, W, zd, mb);
    }
    for (let l = 0; l < t.ccbns.length; l++) {
      const C = t.ccbns[l].channels;
      const col = t.offsets[l];
      channelMoments(G, B, base + col, 1, spread.sigmaG, spread.slope, spread.resid, col, C, nodes, weights, mean, second);
      const o = outs[l];
      scores(mean, second, C, n * C, col, definition === 'activation', scale, o.activation, o.rms, o.raw, o.relative);
    }
  }
}

/** Buffers of the TypeScript engine, kept between calls: μ_γ − 1 and μ_β of a class, sums, the moments. */
let buffers = { mg: new Float32Array(0), mb: new Float32Array(0), acc: new Float64Array(0), mean: new Float64Array(0), second: new Float64Array(0) };
function scratch(W: number, C: number) {
  if (buffers.mg.length < W) buffers = { ...buffers, mg: new Float32Array(W), mb: new Float32Array(W), acc: new Float64Array(2 * W) };
  if (buffers.mean.length < C) buffers = { ...buffers, mean: new Float64Array(C), second: new Float64Array(C) };
  return buffers;
}

/** E[h], √E[h²], the raw score and its share of the layer, for one class row of one layer. */
function scores(mean: Float64Array, second: Float64Array, C: number, row: number, col: number, fromActivation: boolean,
  scale: Float32Array | undefined, activation: Float32Array, rms: Float32Array, raw: Float32Array, relative: Float32Array) {
  let sum = 0;
  for (let k = 0; k < C; k++) {
    const a = mean[k] > 0 ? mean[k] : 0;
    const r = second[k] > 0 ? Math.sqrt(second[k]) : 0;
    activation[row + k] = a;
    rms[row + k] = r;
    const v = fromActivation ? a : scale === undefined ? r : rms[row + k] * scale[col + k];
    raw[row + k] = v;
    sum += v;
  }
  const inv = sum > 0 ? 1 / sum : 0;
  for (let k = 0; k < C; k++) relative[row + k] = raw[row + k] * inv;
}

function transpose(t: ModulationTable) {
  const W = t.width;
  const zd = t.zDim;
  const gamma = new Float32Array(W * zd);
  const beta = new Float32Array(W * zd);
  for (let d = 0; d < zd; d++) {
    for (let k = 0; k < W; k++) {
      gamma[k * zd + d] = t.gammaE[d * W + k];
      beta[k * zd + d] = t.betaE[d * W + k];
    }
  }
  return { gamma, beta };
}

/** out[k] = A[k]·x for A [rows × zd] row-major. */
function gemv(A: Float32Array, x: Float32Array, rows: number, zd: number, out: Float32Array) {
  const z4 = zd - (zd % 4);
  for (let k = 0; k < rows; k++) {
    const b = k * zd;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let d = 0;
    for (; d < z4; d += 4) {
      s0 += A[b + d] * x[d];
      s1 += A[b + d + 1] * x[d + 1];
      s2 += A[b + d + 2] * x[d + 2];
      s3 += A[b + d + 3] * x[d + 3];
    }
    for (; d < zd; d++) s0 += A[b + d] * x[d];
    out[k] = (s0 + s1) + (s2 + s3);
  }
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
