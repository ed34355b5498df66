// `cawa channels / awareness / similar / report` end to end on the shipped default model (6 GenBlocks,
// attention before block 4, so block b is module b for b < 4 and module b + 1 after). Each call costs
// about a second; what the output must hold is checked against the library, computed here in-process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeAwareness, type Awareness } from '../src/awareness/compute.ts';
import { Generator } from '../src/model/generator.ts';
import { loadModel } from '../src/model/load.ts';
import { parseNpy, readStoredZip } from './support/npz.ts';

const CAWA = new URL('../bin/cawa.js', import.meta.url).pathname;

function cawa(args: string[]) {
  const r = spawnSync(process.execPath, [CAWA, ...args, '--threads', '1'], { encoding: 'utf8', env: { ...process.env, CAWA_NO_PROGRESS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let library: Promise<{ g: Generator; a: Awareness; labels: string[] }> | undefined;
/** The default options of the CLI (expected variant, downstream definition, truncation 1), all layers and classes. */
function defaults() {
  library ??= (async () => {
    const m = loadModel();
    const g = await Generator.create(m.config, m.stateDict, { threads: 1 });
    return { g, a: await computeAwareness(g, { threads: 1 }), labels: m.labels! };
  })();
  return library;
}

interface ChannelsJson {
  class: { index: number; label: string } | null;
  layer: { name: string; block: number; j: number; channels: number };
  kind: string;
  channels: { channel: number; awareness: number; relative: number; kind: string; latentShare: number }[];
}

test('cawa channels --class Coat --layer 2 --top 5 --json: the five most aware channels of block 2\'s bn_0, most aware first', async () => {
  const r = cawa(['channels', '--class', 'Coat', '--layer', '2', '--top', '5', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as ChannelsJson;
  assert.deepEqual(out.class, { index: 4, label: 'Coat' });
  assert.equal(out.layer.name, 'generator.layers.2.bn_0');
  assert.equal(out.layer.block, 2);
  assert.equal(out.channels.length, 5);
  for (const c of out.channels) {
    assert.ok(Number.isInteger(c.channel) && typeof c.awareness === 'number' && (c.kind === 'class' || c.kind === 'latent'), JSON.stringify(c));
  }
  for (let i = 1; i < 5; i++) assert.ok(out.channels[i - 1].awareness >= out.channels[i].awareness, 'sorted, most aware first');
  // the same as the library: layer 2 is CCBN 8 (block 2, bn_0)
  const { a } = await defaults();
  const L = a.layers[8];
  assert.equal(L.ccbn.name, 'generator.layers.2.bn_0');
  const C = L.channels;
  const brute = Array.from({ length: C }, (_, k) => k).sort((x, y) => L.raw[4 * C + y] - L.raw[4 * C + x] || x - y).slice(0, 5);
  assert.deepEqual(out.channels.map((c) => c.channel), brute);
  for (const c of out.channels) {
    assert.ok(Math.abs(c.awareness - L.raw[4 * C + c.channel]) <= 1e-6 * L.raw[4 * C + c.channel]);
    assert.equal(c.kind, L.latent[c.channel] ? 'latent' : 'class');
  }
});

test('cawa channels: --layer 5 is block 5\'s bn_0 (module 6, after the attention module); a module path names any CCBN; --kind latent', async () => {
  const r5 = cawa(['channels', '--class', 'sneaker', '--layer', '5', '--top', '3', '--json']);
  assert.equal(r5.code, 0, r5.stderr);
  const o5 = JSON.parse(r5.stdout) as ChannelsJson;
  assert.equal(o5.layer.name, 'generator.layers.6.bn_0');
  assert.deepEqual([o5.layer.block, o5.layer.j, o5.layer.channels], [5, 0, 32]);
  assert.deepEqual(o5.class, { index: 7, label: 'Sneaker' });

  const rl = cawa(['channels', '--layer', 'layers.6.bn_2', '--kind', 'latent', '--top', '1000', '--json']);
  assert.equal(rl.code, 0, rl.stderr);
  const ol = JSON.parse(rl.stdout) as ChannelsJson;
  assert.equal(ol.layer.name, 'generator.layers.6.bn_2');
  assert.deepEqual([ol.layer.block, ol.layer.j, ol.layer.channels], [5, 2, 8]);
  assert.equal(ol.class, null);
  const { a } = await defaults();
  const L = a.layers.find((l) => l.ccbn.name === 'generator.layers.6.bn_2')!;
  const latent = Array.from(L.latent).flatMap((v, k) => (v ? [k] : []));
  assert.ok(ol.channels.every((c) => c.kind === 'latent'));
  assert.deepEqual(ol.channels.map((c) => c.channel).sort((x, y) => x - y), latent);
  for (let i = 1; i < ol.channels.length; i++) assert.ok(ol.channels[i - 1].latentShare >= ol.channels[i].latentShare, 'most latent first');
});

test('cawa channels: unknown class and bad layer fail with a clear message', () => {
  const bad = cawa(['channels', '--class', 'Foo', '--layer', '2']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unknown class "Foo"/);
  assert.match(bad.stderr, /4 Coat/, 'lists the classes');
  assert.equal(bad.stdout, '');
  // module 4 is the attention module, not a GenBlock: it has no CCBN
  const layer = cawa(['channels', '--class', 'Coat', '--layer', 'layers.4.bn_0']);
  assert.notEqual(layer.code, 0);
  assert.match(layer.stderr, /unknown layer "layers\.4\.bn_0": use a GenBlock number 0–5/);
  assert.equal(layer.stdout, '');
});

test('cawa awareness --out aw.npz: one [classes, channels] float32 .npy per layer and quantity, and a JSON index', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cawa-aw-cli-'));
  try {
    const r = cawa(['awareness', '--out', join(dir, 'aw.npz'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.classes, 10);
    assert.equal(summary.layers.length, 24);
    assert.deepEqual(summary.files, { data: join(dir, 'aw.npz'), index: join(dir, 'aw.json') });
    const index = JSON.parse(readFileSync(join(dir, 'aw.json'), 'utf8'));
    const { a, labels } = await defaults();
    assert.deepEqual(index.classes, labels);
    assert.equal(index.variant, 'expected');
    assert.equal(index.definition, 'downstream');
    assert.equal(index.layers.length, 24);
    const zip = readStoredZip(readFileSync(join(dir, 'aw.npz')));
    assert.equal(zip.size, 24 * 6);
    for (const { name, shape } of index.arrays as { name: string; shape: number[] }[]) {
      const npy = parseNpy(zip.get(`${name}.npy`)!);
      assert.deepEqual(npy.shape, shape, name);
    }
    const L = a.layers[8];
    const raw = parseNpy(zip.get('generator.layers.2.bn_0/raw.npy')!);
    assert.deepEqual(raw.shape, [10, 128]);
    for (let i = 0; i < raw.data.length; i++) assert.ok(Math.abs(raw.data[i] - L.raw[i]) <= 1e-6 * L.raw[i] + 1e-12);
    assert.deepEqual(parseNpy(zip.get('generator.layers.2.bn_0/latent.npy')!).data, Float32Array.from(L.latent));
    assert.match(cawa(['awareness', '--out', join(dir, 'aw.npy')]).stderr, /must end in \.npz or \.safetensors/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cawa similar --class Coat --json: the nearest classes by cosine of relative awareness over all layers', async () => {
  const r = cawa(['similar', '--class', 'Coat', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { class: { index: number }; nearest: { class: number; label: string; cosine: number; overlap: number }[] };
  assert.equal(out.class.index, 4);
  assert.equal(out.nearest.length, 5);
  const { a, labels } = await defaults();
  const vec = (c: number) => a.layers.flatMap((L) => Array.from(L.relative.subarray(c * L.channels, (c + 1) * L.channels)));
  const cos = (u: number[], v: number[]) => u.reduce((s, _, i) => s + u[i] * v[i], 0) / Math.sqrt(u.reduce((s, x) => s + x * x, 0) * v.reduce((s, x) => s + x * x, 0));
  const coat = vec(4);
  const brute = Array.from({ length: 10 }, (_, c) => ({ c, v: cos(coat, vec(c)) })).filter((e) => e.c !== 4).sort((x, y) => y.v - x.v).slice(0, 5);
  assert.deepEqual(out.nearest.map((e) => e.class), brute.map((e) => e.c));
  out.nearest.forEach((e, i) => {
    assert.equal(e.label, labels[e.class]);
    assert.ok(Math.abs(e.cosine - brute[i].v) < 1e-5);
    assert.ok(e.overlap >= 0 && e.overlap <= 1);
  });
});

test('cawa report --out DIR: index.html with inline SVG plots, each also saved as an .svg file it links', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cawa-report-'));
  try {
    const r = cawa(['report', '--out', dir, '--layers', '0,5', '--variant', 'zero']);
    assert.equal(r.code, 0, r.stderr);
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    assert.match(html, /^<!doctype html>/);
    const inline = html.match(/<svg[\s>]/g) ?? [];
    const files = readdirSync(dir).filter((f) => f.endsWith('.svg')).sort();
    // per focus layer a heatmap, a concentration curve and a shared-channel map; similarity ×2; totals
    assert.equal(files.length, 2 * 3 + 3);
    assert.equal(inline.length, files.length);
    for (const f of files) {
      assert.match(readFileSync(join(dir, f), 'utf8'), /^<svg[\s>]/);
      assert.ok(html.includes(`href="${f}"`), `index.html links ${f}`);
    }
    for (const name of ['generator.layers.0.bn_0', 'generator.layers.6.bn_0', 'Ankle boot']) assert.ok(html.includes(name), name);
    assert.ok(!existsSync(join(dir, 'fig10.svg')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cawa channels --definition taylor: the measured first-order ablation estimate, as the library computes it', async () => {
  const r = cawa(['channels', '--class', 'Coat', '--layer', '2', '--top', '4', '--definition', 'taylor', '--taylor-samples', '2', '--taylor-probes', '2', '--seed', '3', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as ChannelsJson & { definition: string };
  assert.equal(out.definition, 'taylor');
  const { g } = await defaults();
  const { taylorEffect } = await import('../src/awareness/taylor.ts');
  const { allClasses } = await import('../src/awareness/compute.ts');
  const all = (await taylorEffect(g, allClasses(10), [8], { truncation: 1, samples: 2, probes: 2, seed: 3 })).get(8)!;
  const scores = all.subarray(4 * 128, 5 * 128);
  const brute = Array.from(scores.keys()).sort((x, z) => scores[z] - scores[x] || x - z).slice(0, 4);
  assert.deepEqual(out.channels.map((c) => c.channel), brute);
  for (const c of out.channels) assert.ok(Math.abs(c.awareness - scores[c.channel]) <= 1e-5 * scores[c.channel], `${c.awareness} vs ${scores[c.channel]}`);
});

test('release the model', async () => {
  if (library) await (await library).g.release();
});
