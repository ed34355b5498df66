// Channel awareness against independent computations:
// - a tiny model with planted conditioning weights (one channel active for one class only, a channel
//   driven only by z, one driven only by the class);
// - the `zero` variant against the closed form E[ReLU(γx̂ + β)] at z = 0, computed here in float64 with
//   this file's own Φ (erf series / erfc continued fraction), for every layer, class and channel;
// - the `expected` variant (Gauss–Hermite over z) against a brute Monte-Carlo average, over real
//   truncated-normal z drawn here, of that same closed form;
// - the two engines (TypeScript kernel, onnxruntime graph) against each other;
// - the analyses against brute-force recomputation; saving against our own .npz/.npy reader (and numpy
//   when it is installed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  concentrationCurve, coreChannels, cosineMatrix, nearestClasses, overlapMatrix, rankChannels, sharedChannels, spearman, topK, totals,
} from '../src/awareness/analyses.ts';
import { allClasses, computeAwareness as computeAll, withScores, type Awareness, type AwarenessOptions, type Definition } from '../src/awareness/compute.ts';
import { reluMoments } from '../src/awareness/kernel.ts';
import { readNpzArray, saveAwareness } from '../src/awareness/save.ts';
import { classSimilarityMatrix, classSimilarityRow } from '../src/awareness/similarity.ts';
import type { StateDict } from '../src/io/tensor.ts';
import type { BigGANConfig } from '../src/model/config.ts';
import { Generator } from '../src/model/generator.ts';
import { loadModel } from '../src/model/load.ts';
import { randomStateDict } from '../src/model/random.ts';
import { parseNpy, readStoredZip } from './support/npz.ts';

/** onnxruntime on one thread (the machine is shared) unless a test says otherwise */
const computeAwareness = (g: Generator, o: AwarenessOptions = {}) => computeAll(g, { threads: 1, ...o });

// ---------- this file's own Gaussian facts (float64) ----------

function erfSeries(z: number): number {
  // 2/√π Σ (−1)ⁿ z^(2n+1) / (n! (2n+1)), for |z| < 3 (terms stay below ~20: ~1e-14 absolute)
  let sum = 0;
  let term = z;
  for (let n = 0; n < 200; n++) {
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    term *= (-z * z) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function erfcContinuedFraction(z: number): number {
  // erfc(z) = e^{−z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))), z ≥ 3, evaluated backward
  let f = 0;
  for (let n = 80; n >= 1; n--) f = n / 2 / (z + f);
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f);
}

function Phi(r: number): number {
  const z = Math.abs(r) / Math.SQRT2;
  if (z < 3) {
    const e = erfSeries(z);
    return r >= 0 ? 0.5 * (1 + e) : 0.5 * (1 - e);
  }
  const c = 0.5 * erfcContinuedFraction(z);
  return r >= 0 ? 1 - c : c;
}
const phi = (r: number) => Math.exp(-0.5 * r * r) / Math.sqrt(2 * Math.PI);

/** E[ReLU(γx + β)] and E[ReLU(γx + β)²] for x ~ N(0, 1). */
function reluMoments64(gamma: number, beta: number): { mean: number; second: number } {
  const s = Math.abs(gamma);
  if (s === 0) return { mean: Math.max(beta, 0), second: Math.max(beta, 0) ** 2 };
  const r = beta / s;
  return { mean: beta * Phi(r) + s * phi(r), second: (beta * beta + s * s) * Phi(r) + beta * s * phi(r) };
}

/** Variance of truncnorm(−2, 2), by Simpson's rule on ∫x²φ / ∫φ (independent of the closed form). */
function truncatedNormalVariance(): number {
  const n = 4000;
  const h = 4 / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i <= n; i++) {
    const x = -2 + i * h;
    const w = i === 0 || i === n ? 1 : i % 2 ? 4 : 2;
    num += w * x * x * phi(x);
    den += w * phi(x);
  }
  return num / den;
}

/** Our own PRNG (xorshift32, seeded through a multiplicative hash) and truncated normals by rejection. */
function uniform(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}
function truncatedNormal(u: () => number): number {
  for (;;) {
    const x = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    if (Math.abs(x) <= 2) return x;
  }
}

// ---------- models ----------

/** γ and β of CCBN i's channel k for latent z and class vector y, straight from the folded weights, in float64. */
function modulation(g: Generator, i: number, k: number, z: ArrayLike<number>, y: ArrayLike<number>): { gamma: number; beta: number } {
  const { z_dim: zd, num_classes: nc } = g.config;
  const spec = g.arch.ccbns[i];
  const bn = g.weights.blocks[spec.block].bn[spec.j];
  const cd = 2 * zd;
  let gamma = 1;
  let beta = 0;
  for (let d = 0; d < zd; d++) {
    let e = 0;
    for (let c = 0; c < nc; c++) e += g.weights.embed[d * nc + c] * y[c];
    gamma += bn.scale.data[k * cd + d] * z[d] + bn.scale.data[k * cd + zd + d] * e;
    beta += bn.offset.data[k * cd + d] * z[d] + bn.offset.data[k * cd + zd + d] * e;
  }
  return { gamma, beta };
}

const oneHot = (nc: number, c: number) => {
  const y = new Float64Array(nc);
  y[c] = 1;
  return y;
};

/**
 * A tiny BigGAN-deep (4 GenBlocks, attention, z_dim 8, 4 classes) with hand-built conditioning in block 0's
 * bn_0 (64 channels): class embeddings are unit vectors (e_c = the c-th basis vector), and
 * - channel STAR: β = +4 for class TARGET, −4 for every other class, γ = 1, nothing from z;
 * - channel LATENT: γ and β driven by z only (class rows zero);
 * - channel CLASS: γ and β driven by the class only (z rows zero);
 * - every other channel: small random rows.
 * Spectral normalisation divides by u·W·v; u and v pick one entry of W whose inverse is exact in float32, so
 * the folded weights are exactly the planted ones.
 */
const PLANT = { zd: 8, nc: 4, STAR: 5, TARGET: 2, LATENT: 9, CLASS: 11 };
function plantedModel(): Promise<Generator> {
  const { zd, nc, STAR, TARGET, LATENT, CLASS } = PLANT;
  const config: BigGANConfig = {
    z_dim: zd, class_embed_dim: zd, channel_width: 4, num_classes: nc, layers: [[false, 16, 8], [true, 8, 4], [false, 4, 2], [true, 2, 1]],
    attention_layer_position: 2, eps: 1e-4, n_stats: 51, output_dim: 16,
  };
  const sd: StateDict = randomStateDict(config, 11);
  const rnd = uniform(99);
  const normal = () => Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
  const C = 64;
  const cd = 2 * zd;
  const scale = new Float32Array(C * cd);
  const offset = new Float32Array(C * cd);
  for (let k = 0; k < C; k++) {
    for (let d = 0; d < cd; d++) {
      const isZ = d < zd;
      let s = 0.15 * normal();
      let o = 0.15 * normal();
      if (k === STAR) {
        s = 0;
        o = isZ ? 0 : d - zd === TARGET ? 4 : d - zd < nc ? -4 : 0;
      } else if (k === LATENT) {
        s = isZ ? 0.4 * normal() : 0;
        o = isZ ? 0.4 * normal() : 0;
      } else if (k === CLASS) {
        s = isZ ? 0 : 0.4 * normal();
        o = isZ ? 0 : 0.4 * normal();
      }
      scale[k * cd + d] = s;
      offset[k * cd + d] = o;
    }
  }
  scale[CLASS * cd + zd] = 0.5; // the entry the spectral-norm vectors pick (1/0.5 is exact)
  const p = 'generator.layers.0.bn_0';
  const put = (name: string, shape: number[], data: Float32Array) => sd.set(`${p}.${name}`, { shape, data, stored: 'F32' });
  const unit = (n: number, i: number, v: number) => {
    const a = new Float32Array(n);
    a[i] = v;
    return a;
  };
  put('scale.weight_orig', [C, cd], scale);
  put('scale.weight_u', [C], unit(C, CLASS, 1));
  put('scale.weight_v', [cd], unit(cd, zd, 2)); // σ = 0.5 · 2 = 1
  put('offset.weight_orig', [C, cd], offset);
  put('offset.weight_u', [C], unit(C, STAR, 1));
  put('offset.weight_v', [cd], unit(cd, zd + TARGET, 0.25)); // σ = 4 · 0.25 = 1
  const embed = new Float32Array(zd * nc);
  for (let c = 0; c < nc; c++) embed[c * nc + c] = 1; // embeddings.weight is [z_dim, num_classes]: e_c = basis vector c
  sd.set('embeddings.weight', { shape: [zd, nc], data: embed, stored: 'F32' });
  return Generator.create(config, sd, { threads: 1 });
}

let planted: Promise<Generator> | undefined;
const getPlanted = () => (planted ??= plantedModel());
let shipped: Promise<Generator> | undefined;
const getShipped = () => {
  shipped ??= (async () => {
    const m = loadModel();
    return Generator.create(m.config, m.stateDict, { threads: 1 });
  })();
  return shipped;
};
/** A random model with z_dim 32 and sizeable z-parts (random rows): the expectation over z matters. */
let randomZ: Promise<Generator> | undefined;
const getRandomZ = () => {
  randomZ ??= (() => {
    const config: BigGANConfig = {
      z_dim: 32, class_embed_dim: 32, channel_width: 4, num_classes: 10, layers: [[false, 16, 8], [true, 8, 4], [false, 4, 2], [true, 2, 1]],
      attention_layer_position: 1, eps: 1e-4, n_stats: 51, output_dim: 16,
    };
    return Generator.create(config, randomStateDict(config, 5), { threads: 1 });
  })();
  return randomZ;
};

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// ---------- planted structure ----------

test('planted: the channel active for one class only ranks first for that class, last for the others, under every definition', async () => {
  const g = await getPlanted();
  const { nc, STAR, TARGET } = PLANT;
  assert.equal(g.weights.blocks[0].bn[0].offset.data[STAR * 16 + 8 + TARGET], 4, 'the folded weights are the planted ones');
  for (const definition of ['activation', 'rms', 'downstream'] as Definition[]) {
    for (const variant of ['zero', 'expected'] as const) {
      const a = await computeAwareness(g, { definition, variant, layers: [0] });
      const L = a.layers[0];
      assert.equal(L.ccbn.name, 'generator.layers.0.bn_0');
      assert.equal(rankChannels(L.raw, 64, TARGET)[0], STAR, `${definition}/${variant}: first for class ${TARGET}`);
      assert.equal(topK(L.relative, 64, TARGET, 1)[0].channel, STAR);
      for (let c = 0; c < nc; c++) {
        if (c === TARGET) continue;
        // β = −4, γ = 1: E[h] = φ(4) − 4Φ(−4) ≈ 7e-6, the smallest of the layer
        assert.equal(rankChannels(L.activation, 64, c)[63], STAR, `${definition}/${variant}: last for class ${c}`);
        assert.ok(L.activation[c * 64 + STAR] < 1e-5);
      }
    }
  }
});

test('planted: a channel driven only by z is latent-oriented, one driven only by the class is class-oriented', async () => {
  const g = await getPlanted();
  const { STAR, LATENT, CLASS } = PLANT;
  for (const truncation of [1, 0.3]) {
    const a = await computeAwareness(g, { layers: [0], truncation });
    const L = a.layers[0];
    assert.equal(L.latent[LATENT], 1);
    assert.ok(L.latentShare[LATENT] > 0.999999, `latent share ${L.latentShare[LATENT]}`);
    assert.equal(L.latent[CLASS], 0);
    assert.equal(L.latentShare[CLASS], 0);
    assert.equal(L.latent[STAR], 0, 'the class-only planted channel is class-oriented');
  }
});

test('latent share of every channel = z-variance / (z-variance + variance over the classes), computed directly', async () => {
  const vtn = truncatedNormalVariance();
  assert.ok(Math.abs(vtn - 0.77374) < 1e-5, `Var truncnorm(−2, 2) = ${vtn}`);
  for (const g of [await getPlanted(), await getShipped()]) {
    const { z_dim: zd, num_classes: nc } = g.config;
    for (const truncation of [1, 0.5]) {
      const a = await computeAwareness(g, { truncation, latentThreshold: 0.4 });
      for (const L of a.layers) {
        const bn = g.weights.blocks[L.ccbn.block].bn[L.ccbn.j];
        for (let k = 0; k < L.channels; k++) {
          let zPart = 0;
          for (let d = 0; d < zd; d++) zPart += bn.scale.data[k * 2 * zd + d] ** 2 + bn.offset.data[k * 2 * zd + d] ** 2;
          zPart *= truncation * truncation * vtn;
          // population variance over the model's classes of γ and β at z = 0
          const gs: number[] = [];
          const bs: number[] = [];
          for (let c = 0; c < nc; c++) {
            const m = modulation(g, L.ccbn.index, k, new Float64Array(zd), oneHot(nc, c));
            gs.push(m.gamma);
            bs.push(m.beta);
          }
          const variance = (v: number[]) => {
            const mu = v.reduce((s, x) => s + x, 0) / v.length;
            return v.reduce((s, x) => s + (x - mu) ** 2, 0) / v.length;
          };
          const classPart = variance(gs) + variance(bs);
          const share = zPart + classPart > 0 ? zPart / (zPart + classPart) : 0;
          assert.ok(Math.abs(L.latentShare[k] - share) < 2e-4, `${L.ccbn.name} channel ${k}, t ${truncation}: ${L.latentShare[k]} vs ${share}`);
          if (Math.abs(share - 0.4) > 1e-3) assert.equal(L.latent[k], share > 0.4 ? 1 : 0);
        }
      }
    }
  }
});

// ---------- the closed form and the expectation over z ----------

test('zero variant = the closed form at z = 0 for every layer, class and channel (both engines, all definitions)', async () => {
  for (const g of [await getPlanted(), await getShipped()]) {
    const { z_dim: zd, num_classes: nc } = g.config;
    const z0 = new Float64Array(zd);
    const expect = g.arch.ccbns.map((spec) => {
      const act = new Float64Array(nc * spec.channels);
      const rms = new Float64Array(nc * spec.channels);
      for (let c = 0; c < nc; c++) {
        for (let k = 0; k < spec.channels; k++) {
          const { gamma, beta } = modulation(g, spec.index, k, z0, oneHot(nc, c));
          const m = reluMoments64(gamma, beta);
          act[c * spec.channels + k] = m.mean;
          rms[c * spec.channels + k] = Math.sqrt(m.second);
        }
      }
      return { act, rms };
    });
    for (const engine of ['typescript', 'onnxruntime'] as const) {
      for (const definition of ['activation', 'rms', 'downstream'] as Definition[]) {
        const a = await computeAwareness(g, { variant: 'zero', engine, definition, threads: 1 });
        assert.equal(a.numClasses, nc);
        assert.equal(a.layers.length, g.arch.ccbns.length);
        a.layers.forEach((L, i) => {
          const C = L.channels;
          const { act, rms } = expect[i];
          // float32 class means (and, for onnxruntime, float32 Φ): relative 1e-5 of the layer's scale
          const tolA = 1e-5 * maxAbs(act) + 1e-7;
          const tolR = 1e-5 * maxAbs(rms) + 1e-7;
          for (let j = 0; j < act.length; j++) {
            assert.ok(Math.abs(L.activation[j] - act[j]) <= tolA, `${engine} ${L.ccbn.name}[${j}]: E[h] ${L.activation[j]} vs ${act[j]}`);
            assert.ok(Math.abs(L.rms[j] - rms[j]) <= tolR, `${engine} ${L.ccbn.name}[${j}]: rms ${L.rms[j]} vs ${rms[j]}`);
          }
          for (let c = 0; c < nc; c++) {
            let s = 0;
            for (let k = 0; k < C; k++) s += L.relative[c * C + k];
            assert.ok(Math.abs(s - 1) < 1e-5, `relative row sums to ${s}`);
            for (let k = 0; k < C; k++) {
              const j = c * C + k;
              if (definition === 'activation') assert.equal(L.raw[j], L.activation[j]);
              if (definition === 'rms') assert.equal(L.raw[j], L.rms[j]);
              if (definition === 'downstream' && c > 0 && L.rms[j] > 1e-3 && L.rms[k] > 1e-3) {
                // a class-free factor per channel: raw/rms is the same for every class
                const f0 = L.raw[k] / L.rms[k];
                assert.ok(Math.abs(L.raw[j] / L.rms[j] - f0) <= 1e-5 * f0, `${L.ccbn.name} channel ${k}: class-free gain`);
              }
            }
          }
        });
      }
    }
  }
});

test('expected variant = a Monte-Carlo average over truncated-normal z of the closed form (tolerance: 4.5 standard errors)', async () => {
  // M samples per case; SE_k = sd_k/√M per channel. Over the ~900 comparisons below, |N(0,1)| > 4.5 would
  // show up by chance with probability ~0.6% for a random seed (and the seeds here are fixed). The
  // central-limit step of the method (z-parts of γ, β taken as Gaussian) is far below that at z_dim 32.
  // The test has power: the zero variant misses the same averages by many standard errors.
  const M = 3000;
  const cases: [Promise<Generator>, number, number, number][] = [
    [getShipped(), 2, 1, 4], // block 0 bn_2 (64 channels), truncation 1, Coat
    [getShipped(), 4, 0.5, 7], // block 1 bn_0 (256 channels), truncation 0.5, Sneaker
    [getRandomZ(), 0, 1, 3], // random model: block 0 bn_0 (64 channels)
    [getRandomZ(), 6, 0.5, 8], // block 1 bn_2
  ];
  let zeroMiss = 0;
  for (const [gp, li, t, cls] of cases) {
    const g = await gp;
    const { z_dim: zd, num_classes: nc } = g.config;
    const C = g.arch.ccbns[li].channels;
    const u = uniform(1000 + li * 31 + cls);
    const s1 = new Float64Array(C), s1q = new Float64Array(C), s2 = new Float64Array(C), s2q = new Float64Array(C);
    const z = new Float64Array(zd);
    const y = oneHot(nc, cls);
    // the class part does not depend on z: split it off once
    const base = Array.from({ length: C }, (_, k) => modulation(g, li, k, new Float64Array(zd), y));
    const spec = g.arch.ccbns[li];
    const bn = g.weights.blocks[spec.block].bn[spec.j];
    for (let i = 0; i < M; i++) {
      for (let d = 0; d < zd; d++) z[d] = t * truncatedNormal(u);
      for (let k = 0; k < C; k++) {
        let gamma = base[k].gamma;
        let beta = base[k].beta;
        for (let d = 0; d < zd; d++) {
          gamma += bn.scale.data[k * 2 * zd + d] * z[d];
          beta += bn.offset.data[k * 2 * zd + d] * z[d];
        }
        const m = reluMoments64(gamma, beta);
        s1[k] += m.mean;
        s1q[k] += m.mean * m.mean;
        s2[k] += m.second;
        s2q[k] += m.second * m.second;
      }
    }
    const yv = Float32Array.from(y);
    const expected = (await computeAwareness(g, { classes: [yv], layers: [li], truncation: t, definition: 'activation' })).layers[0];
    const zero = (await computeAwareness(g, { classes: [yv], layers: [li], truncation: t, definition: 'activation', variant: 'zero' })).layers[0];
    for (let k = 0; k < C; k++) {
      const mean = s1[k] / M;
      const se = Math.sqrt(Math.max(0, s1q[k] / M - mean * mean) / M);
      const second = s2[k] / M;
      const se2 = Math.sqrt(Math.max(0, s2q[k] / M - second * second) / M);
      const what = `${spec.name} t ${t} class ${cls} channel ${k}`;
      assert.ok(Math.abs(expected.activation[k] - mean) <= 4.5 * se + 1e-6, `${what}: E[h] ${expected.activation[k]} vs MC ${mean} ± ${se}`);
      assert.ok(Math.abs(expected.rms[k] ** 2 - second) <= 4.5 * se2 + 1e-6, `${what}: E[h²] ${expected.rms[k] ** 2} vs MC ${second} ± ${se2}`);
      zeroMiss = Math.max(zeroMiss, Math.abs(zero.activation[k] - mean) / se);
    }
  }
  assert.ok(zeroMiss > 10, `the zero variant should be far from the average over z (${zeroMiss.toFixed(1)} SE)`);
});

test('expected variant: 5 Gauss–Hermite nodes agree with 40; with no z-dependence the expectation is the zero variant', async () => {
  // On the shipped model σ_γ ≤ 0.32: the 5-node rule is within ~1e-4 of the layer's largest E[h] at
  // truncation 1 (3e-4 relative to the value, far below the channel-to-channel differences that rank
  // channels) and ~2e-7 at 0.5, where the z-spread is half as wide.
  const g = await getShipped();
  for (const [truncation, tol] of [[1, 3e-4], [0.5, 1e-5]]) {
    const a5 = await computeAwareness(g, { definition: 'rms', truncation });
    const a40 = await computeAwareness(g, { definition: 'rms', quadrature: 40, truncation });
    a5.layers.forEach((L, i) => {
      const t = tol * maxAbs(a40.layers[i].activation);
      for (let j = 0; j < L.activation.length; j++) assert.ok(Math.abs(L.activation[j] - a40.layers[i].activation[j]) <= t, `t ${truncation} ${L.ccbn.name}[${j}]`);
    });
  }
  // planted STAR and CLASS channels have no z-part: expected = zero there, at any truncation
  const p = await getPlanted();
  const e = (await computeAwareness(p, { layers: [0], truncation: 0.7 })).layers[0];
  const z = (await computeAwareness(p, { layers: [0], variant: 'zero' })).layers[0];
  for (const k of [PLANT.STAR, PLANT.CLASS]) {
    for (let c = 0; c < PLANT.nc; c++) assert.ok(Math.abs(e.activation[c * 64 + k] - z.activation[c * 64 + k]) <= 1e-6 * (1 + z.activation[c * 64 + k]));
  }
});

test('the TypeScript kernel and the onnxruntime graph agree (every variant, definition, soft classes, subsets of layers)', async () => {
  const g = await getRandomZ();
  const nc = g.config.num_classes;
  const soft = new Float32Array(nc);
  soft[1] = 0.7;
  soft[4] = 0.3;
  const dense = Float32Array.from({ length: nc }, (_, c) => (c + 1) / 55);
  const classes = [...allClasses(nc).slice(0, 3), soft, dense];
  for (const variant of ['zero', 'expected'] as const) {
    for (const definition of ['activation', 'rms', 'downstream'] as Definition[]) {
      const opts = { variant, definition, classes, layers: [7, 0, 12, 3], truncation: 0.6, threads: 1 };
      const ts = await computeAwareness(g, { ...opts, engine: 'typescript' });
      const ort = await computeAwareness(g, { ...opts, engine: 'onnxruntime' });
      ts.layers.forEach((L, i) => {
        assert.equal(L.ccbn.index, opts.layers[i]);
        for (const q of ['activation', 'rms', 'raw', 'relative'] as const) {
          // onnxruntime evaluates Φ in float32: ~1e-7 absolute, so compare on the layer's scale
          const tol = 2e-5 * maxAbs(L[q]) + 1e-8;
          for (let j = 0; j < L[q].length; j++) assert.ok(Math.abs(L[q][j] - ort.layers[i][q][j]) <= tol, `${variant}/${definition} ${L.ccbn.name} ${q}[${j}]: ${L[q][j]} vs ${ort.layers[i][q][j]}`);
        }
        assert.deepEqual(L.latent, ort.layers[i].latent);
      });
    }
  }
  // a soft class mixes the embeddings, not the scores: compare with the closed form at z = 0
  const a = await computeAwareness(g, { variant: 'zero', classes: [soft], layers: [0], definition: 'activation' });
  for (let k = 0; k < 64; k++) {
    const { gamma, beta } = modulation(g, 0, k, new Float64Array(32), soft);
    assert.ok(Math.abs(a.layers[0].activation[k] - reluMoments64(gamma, beta).mean) <= 1e-5);
  }
});

test('the tabulated M(r) = rΦ(r) + φ(r) and S(r) = (r² + 1)Φ(r) + rφ(r) of the kernel', () => {
  for (let r = -9; r <= 9; r += 0.01237) {
    const { M, S } = reluMoments(r);
    const m = reluMoments64(1, r);
    assert.ok(Math.abs(M - m.mean) <= 2e-9 + 1e-6 * m.mean, `M(${r}) = ${M} vs ${m.mean}`);
    assert.ok(Math.abs(S - m.second) <= 2e-9 + 1e-6 * m.second, `S(${r}) = ${S} vs ${m.second}`);
    if (r < -2 && r > -8) assert.ok(Math.abs(M / m.mean - 1) < 1e-4, `relative accuracy in the tail at ${r}`);
  }
});

test('computeAwareness rejects bad options', async () => {
  const g = await getPlanted();
  await assert.rejects(computeAwareness(g, { truncation: 0 }), /truncation/);
  await assert.rejects(computeAwareness(g, { quadrature: 0 }), /quadrature/);
  await assert.rejects(computeAwareness(g, { layers: [99] }), /no CCBN 99/);
  await assert.rejects(computeAwareness(g, { classes: [new Float32Array(3)] }), /class vectors must hold 4 values/);
  const empty = await computeAwareness(g, { classes: [] });
  assert.equal(empty.numClasses, 0);
});

// ---------- analyses ----------

function randomMatrix(N: number, C: number, seed: number, ties = false): Float32Array {
  const u = uniform(seed);
  return Float32Array.from({ length: N * C }, () => (ties ? Math.floor(u() * 5) / 4 : u() ** 3));
}

test('analyses against brute force: top-k, concentration, smallest set holding 80%, shared channels, totals', () => {
  for (const [N, C, ties] of [[7, 40, false], [5, 12, true], [3, 1, false]] as const) {
    const v = randomMatrix(N, C, N * 100 + C, ties);
    for (let c = 0; c < N; c++) {
      const row = Array.from(v.subarray(c * C, (c + 1) * C));
      const order = row.map((x, k) => [x, k] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, k]) => k);
      assert.deepEqual(Array.from(rankChannels(v, C, c)), order);
      assert.deepEqual(topK(v, C, c, 5).map((e) => e.channel), order.slice(0, 5));
      assert.deepEqual(topK(v, C, c, 5).map((e) => e.value), order.slice(0, 5).map((k) => row[k]));
      const total = row.reduce((s, x) => s + x, 0);
      const curve = concentrationCurve(v, C, c);
      let acc = 0;
      order.forEach((k, i) => {
        acc += row[k];
        assert.ok(Math.abs(curve[i] - acc / total) < 1e-6);
      });
      for (const share of [0.5, 0.8, 1]) {
        // smallest n with (sum of the n largest) ≥ share·total, in float64; cases where a partial sum lies
        // within 1e-6 of the threshold (float32 rounding of the curve decides them) are not compared
        let n = 0;
        let s = 0;
        let borderline = false;
        while (n < C && s < share * total) {
          s += row[order[n++]];
          if (Math.abs(s / total - share) < 1e-6) borderline = true;
        }
        const core = Array.from(coreChannels(v, C, c, share));
        if (!borderline) assert.equal(core.length, Math.max(1, n), `N ${N} C ${C} class ${c} share ${share}`);
        assert.deepEqual(core, order.slice(0, core.length));
        assert.ok(core.reduce((a, k) => a + row[k], 0) >= share * total * (1 - 1e-6));
      }
    }
    for (const [share, fraction] of [[0.8, 0.9], [0.5, 0.7], [0.8, 0.3]]) {
      const { count, shared } = sharedChannels(v, C, N, share, fraction);
      const brute = new Array(C).fill(0);
      for (let c = 0; c < N; c++) for (const k of coreChannels(v, C, c, share)) brute[k]++;
      assert.deepEqual(Array.from(count), brute);
      // "at least `fraction` of the classes": count/N ≥ fraction (0.7 × 10 is 7, not 8)
      assert.deepEqual(shared, brute.map((n, k) => [n, k]).filter(([n]) => n / N >= fraction - 1e-12).map(([, k]) => k));
    }
    const t = totals(v, C, N);
    for (let c = 0; c < N; c++) assert.ok(Math.abs(t[c] - Array.from(v.subarray(c * C, (c + 1) * C)).reduce((s, x) => s + x, 0)) < 1e-9);
  }
  // the fraction is a threshold on count/N: 100 classes, 7 of them hold channel 0 → shared at fraction 0.07
  // (0.07 × 100 is 7.000000000000001 in floating point; rounding it up asked for 8 classes)
  const C = 4;
  const v = new Float32Array(100 * C);
  for (let c = 0; c < 100; c++) v[c * C + (c < 7 ? 0 : 1)] = 1;
  assert.deepEqual(sharedChannels(v, C, 100, 0.8, 0.07).shared, [0, 1]);
  assert.deepEqual(sharedChannels(v, C, 100, 0.8, 0.08).shared, [1]);
});

test('analyses against brute force: cosine, top-k overlap, nearest classes, Spearman, class similarity over layers', () => {
  const N = 6;
  const C = 30;
  const v = randomMatrix(N, C, 7);
  const cos = cosineMatrix(v, C, N);
  const ov = overlapMatrix(v, C, N, 8);
  const top = (c: number, k: number) => new Set(Array.from(v.subarray(c * C, (c + 1) * C)).map((x, j) => [x, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map(([, j]) => j));
  for (let a = 0; a < N; a++) {
    for (let b = 0; b < N; b++) {
      let dot = 0, na = 0, nb = 0;
      for (let k = 0; k < C; k++) {
        dot += v[a * C + k] * v[b * C + k];
        na += v[a * C + k] ** 2;
        nb += v[b * C + k] ** 2;
      }
      assert.ok(Math.abs(cos[a * N + b] - dot / Math.sqrt(na * nb)) < 1e-6);
      const ta = top(a, 8);
      assert.ok(Math.abs(ov[a * N + b] - [...top(b, 8)].filter((x) => ta.has(x)).length / 8) < 1e-7);
    }
    const near = nearestClasses(cos, N, a, 3);
    const brute = Array.from({ length: N }, (_, b) => b).filter((b) => b !== a).sort((x, y) => cos[a * N + y] - cos[a * N + x] || x - y).slice(0, 3);
    assert.deepEqual(near.map((e) => e.cls), brute);
    assert.deepEqual(near.map((e) => e.similarity), brute.map((b) => cos[a * N + b]));
  }
  // Spearman = Pearson correlation of average ranks
  const x = [3, 1, 4, 1, 5, 9, 2, 6];
  const y = [2, 7, 1, 8, 2, 8, 1, 8];
  const ranks = (a: number[]) => a.map((v) => a.filter((w) => w < v).length + (a.filter((w) => w === v).length + 1) / 2);
  const pearson = (a: number[], b: number[]) => {
    const ma = a.reduce((s, v) => s + v, 0) / a.length;
    const mb = b.reduce((s, v) => s + v, 0) / b.length;
    let sab = 0, saa = 0, sbb = 0;
    a.forEach((_, i) => {
      sab += (a[i] - ma) * (b[i] - mb);
      saa += (a[i] - ma) ** 2;
      sbb += (b[i] - mb) ** 2;
    });
    return sab / Math.sqrt(saa * sbb);
  };
  assert.ok(Math.abs(spearman(x, y) - pearson(ranks(x), ranks(y))) < 1e-12);
  assert.equal(spearman([1, 2, 3], [10, 20, 30]), 1);
  assert.equal(spearman([1, 2, 3], [3, 2, 1]), -1);

  // several layers: cosine of the concatenated relative vectors, overlap averaged over layers
  const C2 = 11;
  const fake = (C: number, seed: number) => {
    const raw = randomMatrix(N, C, seed);
    return { ccbn: { name: `l${C}`, index: 0, block: 0, module: 0, j: 0, channels: C, res: 4 }, channels: C, raw, relative: raw, activation: raw, rms: raw, latentShare: new Float32Array(C), latent: new Uint8Array(C) };
  };
  const base: Awareness = { truncation: 1, variant: 'zero', definition: 'rms', quadrature: 1, latentThreshold: 0.5, numClasses: N, layers: [fake(C, 7), fake(C2, 8)] };
  const sim = classSimilarityMatrix(base, 4);
  for (let p = 0; p < N; p++) {
    const row = classSimilarityRow(base, p, 4);
    for (let q = 0; q < N; q++) {
      const cat = (c: number) => [...base.layers[0].relative.subarray(c * C, (c + 1) * C), ...base.layers[1].relative.subarray(c * C2, (c + 1) * C2)];
      const [u, w] = [cat(p), cat(q)];
      const dot = u.reduce((s, _, i) => s + u[i] * w[i], 0);
      const c = dot / Math.sqrt(u.reduce((s, x) => s + x * x, 0) * w.reduce((s, x) => s + x * x, 0));
      assert.ok(Math.abs(row.cosine[q] - c) < 1e-6);
      assert.ok(Math.abs(sim.cosine[p * N + q] - c) < 1e-6);
      const ovl = base.layers.map((L) => {
        const tops = (cc: number) => new Set(rankChannels(L.relative, L.channels, cc).subarray(0, 4));
        const tp = tops(p);
        return [...tops(q)].filter((k) => tp.has(k)).length / 4;
      });
      assert.ok(Math.abs(row.overlap[q] - (ovl[0] + ovl[1]) / 2) < 1e-9);
    }
  }
});

test('withScores renormalises another estimator\'s scores and keeps the kinds', async () => {
  const g = await getPlanted();
  const a = await computeAwareness(g, { layers: [0, 5] });
  const scores = new Float32Array(4 * 64).map((_, i) => (i % 7) + 1);
  const w = withScores(a, new Map([[5, new Float32Array(4 * 8).fill(2)], [0, scores]]));
  assert.deepEqual(w.layers.map((L) => L.ccbn.index), [0, 5]);
  assert.equal(w.layers[0].raw, scores);
  for (let c = 0; c < 4; c++) {
    const s = scores.subarray(c * 64, (c + 1) * 64).reduce((x, y) => x + y, 0);
    for (let k = 0; k < 64; k++) assert.ok(Math.abs(w.layers[0].relative[c * 64 + k] - scores[c * 64 + k] / s) < 1e-7);
  }
  assert.equal(w.layers[1].relative[3], 1 / 8);
  assert.equal(w.layers[0].latent, a.layers[0].latent);
});

// ---------- saving ----------

test('saveAwareness: .npz that numpy opens (stored .npy members, C order, float32) with a JSON index naming every array', async () => {
  const g = await getPlanted();
  const a = await computeAwareness(g, { truncation: 0.5 });
  const dir = mkdtempSync(join(tmpdir(), 'cawa-aw-'));
  try {
    const files = saveAwareness(join(dir, 'aw.npz'), a, { model: 'planted', classes: ['a', 'b', 'c', 'd'] });
    assert.equal(files.index, join(dir, 'aw.json'));
    const index = JSON.parse(readFileSync(files.index, 'utf8'));
    assert.equal(index.format, 'channel-awareness/1');
    assert.equal(index.truncation, 0.5);
    assert.deepEqual(index.classes, ['a', 'b', 'c', 'd']);
    assert.equal(index.layers.length, g.arch.ccbns.length);
    const zip = readStoredZip(readFileSync(files.data));
    assert.equal(zip.size, 6 * g.arch.ccbns.length);
    for (const entry of index.arrays as { name: string; shape: number[] }[]) {
      const npy = parseNpy(zip.get(`${entry.name}.npy`)!);
      assert.deepEqual(npy.shape, entry.shape, entry.name);
      const [layer, q] = entry.name.split('/');
      const L = a.layers.find((l) => l.ccbn.name === layer)!;
      const want = { raw: L.raw, relative: L.relative, activation: L.activation, rms: L.rms, latent_share: L.latentShare, latent: Float32Array.from(L.latent) }[q]!;
      assert.deepEqual(npy.data, want, entry.name);
      assert.deepEqual(npy.shape, q.startsWith('latent') ? [L.channels] : [4, L.channels]);
      // and the library's own reader agrees
      assert.deepEqual(readNpzArray(files.data, entry.name).data, want);
    }
    for (const L of index.layers) for (const name of Object.values(L.arrays as Record<string, string>)) assert.ok(zip.has(`${name}.npy`), name);

    // numpy itself, when it is installed
    const py = spawnSync('python3', ['-c', `import numpy as np, json, sys
z = np.load(sys.argv[1]); ix = json.load(open(sys.argv[2]))
for a in ix["arrays"]:
    x = z[a["name"]]; assert x.dtype == np.float32 and list(x.shape) == a["shape"], a
r = z["generator.layers.0.bn_0/relative"]; print(r.shape[0], r.shape[1], float(abs(r.sum(1) - 1).max()))`, files.data, files.index], { encoding: 'utf8' });
    if (py.status === 0) {
      const [n, c, err] = py.stdout.trim().split(' ').map(Number);
      assert.deepEqual([n, c], [4, 64]);
      assert.ok(err < 1e-5);
    } else {
      assert.match(py.stderr + (py.error?.message ?? ''), /No module named 'numpy'|ENOENT/, `numpy failed to read the file:\n${py.stderr}`);
    }

    // .safetensors: 8-byte header length, JSON header, float32 data
    const st = saveAwareness(join(dir, 'aw.safetensors'), a, { model: 'planted', classes: ['a', 'b', 'c', 'd'] });
    const buf = readFileSync(st.data);
    const hl = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(buf.subarray(8, 8 + hl).toString('utf8'));
    const e = header['generator.layers.3.bn_1/rms']; // block 2 (module 3: attention is module 2), bn_1: 4 channels
    assert.equal(e.dtype, 'F32');
    assert.deepEqual(e.shape, [4, 4]);
    const bytes = buf.subarray(8 + hl + e.data_offsets[0], 8 + hl + e.data_offsets[1]);
    assert.deepEqual(new Float32Array(Uint8Array.from(bytes).buffer), a.layers[9].rms);
    assert.throws(() => saveAwareness(join(dir, 'aw.npy'), a, { model: 'x', classes: [] }), /must end in \.npz or \.safetensors/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('release the models', async () => {
  for (const p of [planted, shipped, randomZ]) if (p) await (await p).release();
});
