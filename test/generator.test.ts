// The engine against the reference PyTorch port (outputs committed in test/fixtures/hf-fixture), and
// against independent computations of what the graph must do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCheckpoint, readCheckpointBytes } from '../src/io/checkpoint.ts';
import { readNpy } from '../src/io/npy.ts';
import type { StateDict } from '../src/io/tensor.ts';
import { encodeSafetensors, encodeTorchLegacy, encodeTorchZip, type TensorEntry } from '../src/io/writers.ts';
import { parseConfig } from '../src/model/config.ts';
import { linear, truncationStats } from '../src/model/conditioning.ts';
import { Generator, checkTruncation } from '../src/model/generator.ts';

const DIR = new URL('./fixtures/hf-fixture/', import.meta.url).pathname;
const config = parseConfig(JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8')));
const truncations = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as number[];
const npy = (f: string) => readNpy(readFileSync(join(DIR, f)));

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function checkAgainstReference(sd: StateDict, label: string) {
  const g = await Generator.create(config, sd, { threads: 1 });
  for (const t of truncations) {
    const z = npy(`z-${t}.npy`);
    const y = npy(`y-${t}.npy`);
    const ref = npy(`out-${t}.npy`);
    const { images } = await g.forward(g.conditioning(z.data, y.data, z.shape[0]), { truncation: t });
    const d = maxAbsDiff(images, ref.data);
    assert.ok(d <= 1e-4, `${label}, truncation ${t}: max |Δ| = ${d}`);
  }
  await g.release();
}

const entries = (sd: StateDict): TensorEntry[] => [...sd].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));

test('matches the reference port: checkpoints written by torch.save (zip and legacy, non-contiguous) and safetensors', async () => {
  for (const f of ['model-zip.pth', 'model-legacy.pth', 'model.safetensors']) await checkAgainstReference(readCheckpoint(join(DIR, f)), f);
});

test('matches the reference port: checkpoints written by our own writers, TF-layout strided views', async () => {
  const sd = readCheckpoint(join(DIR, 'model.safetensors'));
  await checkAgainstReference(readCheckpointBytes(encodeTorchZip(entries(sd), { transposeLayout: true })), 'zip (ours)');
  await checkAgainstReference(readCheckpointBytes(encodeTorchLegacy(entries(sd), { transposeLayout: true })), 'legacy (ours)');
  await checkAgainstReference(readCheckpointBytes(encodeSafetensors(entries(sd))), 'safetensors (ours)');
});

test('the first CCBN activation equals an independent computation of gen_z, the NHWC reshape and the folded BN', async () => {
  const sd = readCheckpoint(join(DIR, 'model.safetensors'));
  const g = await Generator.create(config, sd, { threads: 1 });
  const z = npy('z-0.4.npy');
  const y = npy('y-0.4.npy');
  const n = z.shape[0];
  const c = g.conditioning(z.data, y.data, n);
  const { activations, images } = await g.forward(c, { truncation: 0.4, fetch: [0] });
  // images come from a leaner graph when nothing is fetched: both graphs must draw the same images
  const imagesOnly = (await g.forward(c, { truncation: 0.4 })).images;
  assert.deepEqual(imagesOnly, images);
  const act = activations.get(0)!;
  const C = 16 * config.channel_width;
  const h = linear(g.weights.genZ, c.cond, n);
  const bn = g.weights.blocks[0].bn[0];
  const { mean, variance } = truncationStats(bn.means, bn.vars, config.n_stats, 0.4);
  let max = 0;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < C; ch++) {
      for (let p = 0; p < 16; p++) {
        const x = h[b * C * 16 + p * C + ch] + g.weights.genZ.bias![p * C + ch]; // flat index = (y·4 + x)·C + c
        const v = (x - mean[ch]) / Math.sqrt(variance[ch] + config.eps) * c.gamma[0][b * C + ch] + c.beta[0][b * C + ch];
        max = Math.max(max, Math.abs(Math.max(0, v) - act[(b * C + ch) * 16 + p]));
      }
    }
  }
  assert.ok(max < 1e-4, `max |Δ| ${max}`);
  await g.release();
});

test('per-channel edits: neutral edits change nothing, mul 0 zeroes the channel and changes the image', async () => {
  const g = await Generator.create(config, readCheckpoint(join(DIR, 'model.safetensors')), { threads: 1 });
  const z = npy('z-1.npy');
  const y = npy('y-1.npy');
  const c = g.conditioning(z.data, y.data, z.shape[0]);
  const i = 5; // block 1, bn_1
  const C = g.arch.ccbns[i].channels;
  const base = await g.forward(c, { truncation: 1, fetch: [i] });
  const neutral = await g.forward(c, { truncation: 1, edits: new Map([[i, { mul: new Float32Array(C).fill(1), add: new Float32Array(C) }]]) });
  assert.equal(maxAbsDiff(base.images, neutral.images), 0);
  const mul = new Float32Array(C).fill(1);
  // pick the channel with the largest activation so the ablation must show
  const act = base.activations.get(i)!;
  const hw = act.length / (z.shape[0] * C);
  let best = 0;
  let bestSum = -1;
  for (let ch = 0; ch < C; ch++) {
    let s = 0;
    for (let p = 0; p < hw; p++) s += act[ch * hw + p];
    if (s > bestSum) [best, bestSum] = [ch, s];
  }
  mul[best] = 0;
  const ablated = await g.forward(c, { truncation: 1, edits: new Map([[i, { mul }]]), fetch: [i] });
  const a = ablated.activations.get(i)!;
  for (let b = 0; b < z.shape[0]; b++) for (let p = 0; p < hw; p++) assert.equal(a[(b * C + best) * hw + p], 0);
  assert.ok(maxAbsDiff(base.images, ablated.images) > 1e-4, 'zeroing the most active channel must change the image');
  await g.release();
});

test('a config that does not match the weights names the first differing key', async () => {
  const sd = readCheckpoint(join(DIR, 'model.safetensors'));
  // channel_width 8 instead of 4: gen_z makes 4·4·16·ch values, so its bias is the first key (in module
  // order, after the unchanged embedding) whose shape differs: [1024] stored, [2048] implied
  const wrongWidth = { ...config, channel_width: 8 };
  await assert.rejects(Generator.create(wrongWidth, sd),
    /config does not match weights: generator\.gen_z\.bias has shape \[1024\] in the weights, the config implies \[2048\]/);
  const missing = new Map(sd);
  missing.delete('generator.layers.3.conv_1.weight_orig');
  await assert.rejects(Generator.create(config, missing), /generator\.layers\.3\.conv_1\.weight_orig \[8, 8, 3, 3\] is missing/);
});

test('truncation must lie in (0, 1]', () => {
  for (const t of [0, -0.1, 1.01, Number.NaN]) assert.throws(() => checkTruncation(t), /truncation must be in \(0, 1\]/);
  checkTruncation(1);
  checkTruncation(0.02);
});

test('truncation statistics replicate the reference quirks (swapped weights, float grid)', () => {
  const nStats = 51;
  const means = new Float32Array(nStats).map((_, k) => k); // row k holds the value k
  const vars = new Float32Array(nStats).fill(1);
  const row = (t: number) => truncationStats(means, vars, nStats, t).mean[0];
  assert.equal(row(1.0), 50);
  assert.equal(row(0.4), 20);
  assert.equal(row(0.14), Math.fround(Math.fround(7 * Math.fround(7.000000000000001 - 7)) + Math.fround(8 * Math.fround(1 - (7.000000000000001 - 7))))); // ≈ 8: lands on the NEXT row
  assert.ok(Math.abs(row(0.14) - 8) < 1e-5);
  assert.ok(Math.abs(row(0.58) - 28) < 1e-5); // q = 28.999…, the coefficient weighs the lower row
  assert.ok(Math.abs(row(0.25) - 12.5) < 1e-6); // coef 0.5 averages rows 12 and 13
});
