// The Taylor estimator's hand-written backward pass against finite differences through the engine:
// Σ_p h·g for channel k must equal d/dε r·G(h·(1 + ε e_k)) at ε = 0, which the engine's per-channel
// `mul` edits give by central differences. On a tiny random model with attention and on the shipped
// model (attention in block 4), for every CCBN, upstream and downstream of the attention module.
//
// The engine runs in float32 through up to 24 ReLU layers, so a finite difference of r·image is noisy:
// rounding (∝ 1/ε) and ReLU kinks crossed within ±ε (∝ ε). With a Rademacher r the signal is a
// random-sign sum over 3·R² values and the rounding noise swamps small channels; so each channel k gets
// its own cotangent r_k along its (coarse, ε = 1e-2) image change, which makes the signal coherent
// while still exercising the full vector–Jacobian product (any wrong rule shows as an O(1) error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { taylorEffect, taylorProducts, taylorStatistics, releaseTaylor } from '../src/awareness/taylor.ts';
import { parseConfig, type BigGANConfig } from '../src/model/config.ts';
import { Generator } from '../src/model/generator.ts';
import { loadModel } from '../src/model/load.ts';
import { randomStateDict } from '../src/model/random.ts';
import { oneHot, sampleZ } from '../src/model/sampling.ts';

const EPS = 1e-3;

/** (G(h·(1 + ε e_k)) − G(h·(1 − ε e_k))) / 2ε for each channel k, in float64: one batch of 2·|ks| images. */
async function centralDifferences(g: Generator, i: number, z: Float32Array, y: Float32Array, ks: number[], eps: number): Promise<Float64Array[]> {
  const zd = g.config.z_dim;
  const nc = g.config.num_classes;
  const C = g.arch.ccbns[i].channels;
  const per = 3 * g.arch.resolution ** 2;
  const n = 2 * ks.length;
  const zz = new Float32Array(n * zd);
  const yy = new Float32Array(n * nc);
  const mul = new Float32Array(n * C).fill(1);
  ks.forEach((k, j) => {
    for (const [row, f] of [[2 * j, 1 + eps], [2 * j + 1, 1 - eps]]) {
      zz.set(z, row * zd);
      yy.set(y, row * nc);
      mul[row * C + k] = f;
    }
  });
  const { images } = await g.forward(g.conditioning(zz, yy, n), { truncation: 1, edits: new Map([[i, { mul }]]) });
  return ks.map((_, j) => Float64Array.from({ length: per }, (_, q) => (images[2 * j * per + q] - images[(2 * j + 1) * per + q]) / (2 * eps)));
}

/**
 * For one image (z, class) and channels ks of CCBN i: the graph's Σ_p h·g under cotangent r_k (the unit
 * direction of channel k's image change) and the central difference r_k·(G₊ − G₋)/2ε; channels whose
 * image change is under 5% of the layer's largest are dropped. Returns relative errors beyond the finite
 * difference's own uncertainty (its change between ε and 2ε).
 */
async function relativeErrors(g: Generator, i: number, ks: number[], seed: number): Promise<number[]> {
  const zd = g.config.z_dim;
  const nc = g.config.num_classes;
  const per = 3 * g.arch.resolution ** 2;
  const C = g.arch.ccbns[i].channels;
  const z = sampleZ(1, zd, 1, seed);
  const y = oneHot([seed % nc], nc);
  const coarse = await centralDifferences(g, i, z, y, ks, 1e-2);
  const norms = coarse.map((d) => Math.hypot(...d));
  const top = Math.max(...norms);
  if (!(top > 1e-3)) return []; // a layer that does not reach the image (dead ReLUs in a random model)
  const keep = ks.map((_, j) => j).filter((j) => norms[j] >= 0.05 * top);
  const r = new Float32Array(keep.length * per);
  keep.forEach((j, b) => r.set(Float32Array.from(coarse[j], (v) => v / norms[j]), b * per));
  const zz = new Float32Array(keep.length * zd);
  const yy = new Float32Array(keep.length * nc);
  keep.forEach((_, b) => (zz.set(z, b * zd), yy.set(y, b * nc)));
  const analytic = (await taylorProducts(g, zz, yy, r, keep.length, [i], 1)).get(i)!;
  const fine = await centralDifferences(g, i, z, y, keep.map((j) => ks[j]), EPS);
  // the same difference at 2ε: the two disagree by about the finite difference's own error (float32 rounding
  // through the whole network ∝ 1/ε, ReLU kinks crossed ∝ ε), which is not the graph's error
  const wider = await centralDifferences(g, i, z, y, keep.map((j) => ks[j]), 2 * EPS);
  return keep.map((j, b) => {
    let fd = 0;
    let fd2 = 0;
    for (let q = 0; q < per; q++) {
      fd += fine[b][q] * r[b * per + q];
      fd2 += wider[b][q] * r[b * per + q];
    }
    return Math.max(0, Math.abs(analytic[b * C + ks[j]] - fd) - Math.abs(fd - fd2)) / Math.abs(fd);
  });
}

/** Every checked channel within 5%, at least 90% of them (and the median) within 1%. */
function check(label: string, errs: number[]) {
  const sorted = [...errs].sort((a, b) => a - b);
  const within = errs.filter((e) => e < 1e-2).length;
  const summary = `${label}: ${within}/${errs.length} channels within 1e-2, median ${sorted[sorted.length >> 1]?.toExponential(1)}, worst ${sorted[sorted.length - 1]?.toExponential(1)}`;
  assert.ok(sorted[sorted.length - 1] < 5e-2, summary);
  assert.ok(within >= 0.9 * errs.length, summary);
  assert.ok(sorted[sorted.length >> 1] < 1e-2, summary);
}

const tiny: BigGANConfig = parseConfig({
  z_dim: 8, class_embed_dim: 8, channel_width: 4, num_classes: 5, attention_layer_position: 2, eps: 1e-4, n_stats: 51,
  layers: [[false, 16, 16], [true, 16, 8], [false, 8, 8], [true, 8, 4], [false, 4, 2], [true, 2, 1]],
});

test('Taylor backward = finite differences on a tiny random model with attention, every channel of every CCBN', async () => {
  const g = await Generator.create(tiny, randomStateDict(tiny, 3), { threads: 1 });
  assert.ok(g.arch.modules.some((m) => m.kind === 'attention'));
  let layers = 0;
  for (const spec of g.arch.ccbns) {
    const errs = await relativeErrors(g, spec.index, Array.from({ length: spec.channels }, (_, k) => k), 5 + spec.index);
    if (errs.length === 0) continue;
    layers++;
    check(`tiny ${spec.name}`, errs);
  }
  assert.ok(layers >= 20, `only ${layers} of 24 CCBNs reach the image`);
  await releaseTaylor(g);
  await g.release();
});

test('Taylor backward = finite differences on the shipped model, every CCBN (before and after the attention module)', async () => {
  const model = loadModel();
  const g = await Generator.create(model.config, model.stateDict, { threads: 1 });
  assert.ok(g.arch.modules.some((m) => m.kind === 'attention'), 'the shipped model has attention');
  for (const spec of g.arch.ccbns) {
    const C = spec.channels;
    const n = Math.min(C, 24);
    const ks = Array.from({ length: n }, (_, k) => Math.floor((k * C) / n));
    const errs = await relativeErrors(g, spec.index, ks, 5 + spec.index);
    assert.ok(errs.length >= 3, `${spec.name}: only ${errs.length} channels with a visible effect`);
    check(`fmnist ${spec.name}`, errs);
  }
  await releaseTaylor(g);
  await g.release();
});

test('taylorEffect: [classes × C] per layer, finite, non-negative, reproducible, and the statistics agree', async () => {
  const g = await Generator.create(tiny, randomStateDict(tiny, 4), { threads: 1 });
  const classes = [oneHot([0], 5), oneHot([3], 5)];
  const layers = [0, 9, 23];
  const opts = { samples: 3, probes: 4, seed: 2, batch: 5 };
  const a = await taylorEffect(g, classes, layers, opts);
  const b = await taylorEffect(g, classes, layers, { ...opts, batch: 64 });
  const st = await taylorStatistics(g, classes, layers, opts);
  for (const i of layers) {
    const v = a.get(i)!;
    assert.equal(v.length, 2 * g.arch.ccbns[i].channels);
    assert.ok(v.every((x) => Number.isFinite(x) && x >= 0));
    assert.ok(v.some((x) => x > 0));
    // batching does not change the result (same z, same probes)
    for (let k = 0; k < v.length; k++) assert.ok(Math.abs(v[k] - b.get(i)![k]) <= 1e-5 * (1 + Math.abs(v[k])));
    // Jensen: E_z √(E_m s²) ≤ √(E_z E_m s²), and mean |s| ≤ RMS
    for (let k = 0; k < v.length; k++) {
      assert.ok(st.rms.get(i)![k] <= st.pooled.get(i)![k] * (1 + 1e-5) + 1e-12);
      assert.ok(st.abs.get(i)![k] <= st.pooled.get(i)![k] * (1 + 1e-5) + 1e-12);
    }
  }
  await releaseTaylor(g);
  await g.release();
});
