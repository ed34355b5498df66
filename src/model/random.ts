// Random BigGAN-deep weights of any size, for tests and benchmarks: every key the config implies,
// with spectral-norm vectors at the weights' top singular direction (so activations stay bounded)
// and plausible truncation-indexed statistics.
import type { StateDict } from '../io/tensor.ts';
import { architecture, type BigGANConfig } from './config.ts';
import { expectedKeys } from './weights.ts';

/** Small deterministic PRNG (mulberry32) → standard normals by Box–Muller; test data, not sampling. */
export function normalSource(seed: number) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

function fill(n: number, f: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f();
  return a;
}

/** One power iteration step pair from a random start: u, v near the top singular vectors. */
function spectralVectors(w: Float32Array, out: number, inn: number, rnd: () => number, iters = 2) {
  let v = fill(inn, rnd);
  let u = new Float32Array(out);
  const norm = (x: Float32Array) => {
    let s = 0;
    for (const e of x) s += e * e;
    const k = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let i = 0; i < x.length; i++) x[i] *= k;
    return x;
  };
  norm(v);
  for (let it = 0; it < iters; it++) {
    u = new Float32Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += w[o * inn + i] * v[i];
      u[o] = s;
    }
    norm(u);
    const nv = new Float32Array(inn);
    for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) nv[i] += w[o * inn + i] * u[o];
    v = norm(nv);
  }
  return { u, v };
}

export function randomStateDict(config: BigGANConfig, seed = 0): StateDict {
  const rnd = normalSource(seed);
  const sd: StateDict = new Map();
  const keys = expectedKeys(architecture(config));
  for (const [key, shape] of keys) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (key.endsWith('weight_u') || key.endsWith('weight_v')) continue; // filled with their weight below
    if (key.endsWith('running_vars')) data = fill(n, () => 0.5 + Math.abs(rnd()));
    else if (key.endsWith('running_means')) data = fill(n, () => 0.2 * rnd());
    else if (key.endsWith('.gamma')) data = new Float32Array([0.5]);
    else if (key.endsWith('bias')) data = fill(n, () => 0.05 * rnd());
    else data = fill(n, rnd);
    sd.set(key, { shape, data, stored: 'F32' });
    if (key.endsWith('weight_orig')) {
      const p = key.slice(0, -'weight_orig'.length);
      const out = shape[0];
      const { u, v } = spectralVectors(data, out, n / out, rnd);
      sd.set(`${p}weight_u`, { shape: [out], data: u, stored: 'F32' });
      sd.set(`${p}weight_v`, { shape: [n / out], data: v, stored: 'F32' });
    }
  }
  return sd;
}

/** The published BigGAN-deep configs (HF config.json values). */
export function publishedConfig(resolution: 128 | 256 | 512): BigGANConfig {
  const layers: [boolean, number, number][] = [[false, 16, 16], [true, 16, 16], [false, 16, 16], [true, 16, 8], [false, 8, 8]];
  if (resolution === 128) layers.push([true, 8, 4], [false, 4, 4], [true, 4, 2], [false, 2, 2], [true, 2, 1]);
  else {
    layers.push([true, 8, 8], [false, 8, 8], [true, 8, 4], [false, 4, 4], [true, 4, 2], [false, 2, 2], [true, 2, 1]);
    if (resolution === 512) layers.push([false, 1, 1], [true, 1, 1]);
  }
  return { z_dim: 128, class_embed_dim: 128, channel_width: 128, num_classes: 1000, layers, attention_layer_position: 8, eps: 1e-4, n_stats: 51, output_dim: resolution };
}
