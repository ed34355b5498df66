// Class names and `--classes` parsing (src/model/classes.ts), and seeded latent sampling (src/model/sampling.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClassSpace, parseClassSpec, parseOneClass } from '../src/model/classes.ts';
import { oneHot, sampleZ, truncatedNormalSource, uniformSource } from '../src/model/sampling.ts';

const imagenet = ClassSpace.imagenet();
const FMNIST = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const fmnist = ClassSpace.fromLabels(FMNIST);

test('the shipped ImageNet list: 1000 classes in the standard order (sorted, unique WordNet ids)', () => {
  assert.equal(imagenet.size, 1000);
  const w = imagenet.wnids!;
  assert.equal(new Set(w).size, 1000);
  for (let i = 1; i < w.length; i++) assert.ok(w[i - 1] < w[i], `WordNet ids must be sorted: ${w[i - 1]} before ${w[i]}`);
  // well-known anchors of the ILSVRC-2012 index (the reference port's IMAGENET offset table agrees: docs/parity.md)
  const anchors: [number, string, string][] = [
    [0, 'n01440764', 'tench'], [1, 'n01443537', 'goldfish'], [207, 'n02099601', 'golden retriever'],
    [281, 'n02123045', 'tabby'], [417, 'n02782093', 'balloon'], [948, 'n07742313', 'Granny Smith'],
    [980, 'n09472597', 'volcano'], [999, 'n15075141', 'toilet tissue'],
  ];
  for (const [i, wnid, name] of anchors) {
    assert.equal(w[i], wnid);
    assert.equal(imagenet.label(i), name);
  }
});

test('one class by index, name (any case, _ or space) or WordNet id', () => {
  assert.equal(imagenet.resolve('207'), 207);
  assert.equal(imagenet.resolve(' 0 '), 0);
  assert.equal(imagenet.resolve('golden retriever'), 207);
  assert.equal(imagenet.resolve('Golden_Retriever'), 207);
  assert.equal(imagenet.resolve('GOLDEN   retriever'), 207);
  assert.equal(imagenet.resolve('n02123045'), 281);
  assert.equal(imagenet.resolve('N02123045'), 281);
  assert.equal(imagenet.resolve('Granny Smith'), 948);
  assert.equal(fmnist.resolve('Ankle boot'), 9);
  assert.equal(fmnist.resolve('ankle_boot'), 9);
  assert.equal(fmnist.resolve('t-shirt/top'), 0);
  assert.equal(parseOneClass('coat', fmnist), 4);
});

test('ambiguous, unknown and out-of-range classes are clear errors', () => {
  // ImageNet has "Cardigan" (the corgi, 264) and "cardigan" (the sweater, 474): names match case-insensitively
  assert.throws(() => imagenet.resolve('cardigan'), (e: unknown) => {
    const m = (e as Error).message;
    assert.match(m, /class name "cardigan" is ambiguous/);
    assert.match(m, /264 \(n02113186\)/);
    assert.match(m, /474 \(n02963159\)/);
    assert.match(m, /give an index or a WordNet id/);
    return true;
  });
  assert.equal(imagenet.resolve('n02113186'), 264); // the way out the error suggests
  assert.throws(() => imagenet.resolve('no such thing'), /unknown class "no such thing"/);
  assert.throws(() => imagenet.resolve('golden'), /unknown class "golden"; did you mean "golden retriever"/);
  assert.throws(() => imagenet.resolve('1000'), /class 1000 out of range \[0, 999\]/);
  assert.throws(() => fmnist.resolve('10'), /class 10 out of range \[0, 9\]/);
  assert.throws(() => fmnist.resolve('boots'), /unknown class "boots"; classes: 0 T-shirt\/top, 1 Trouser/);
  assert.throws(() => parseOneClass('coat+bag', fmnist), /expected one class/);
  const dup = ClassSpace.fromLabels(['cat', 'dog', 'Cat']);
  assert.throws(() => dup.resolve('cat'), /ambiguous: it names classes 0, 2; give an index$/);
});

test('--classes: lists, soft mixes normalised to sum 1, equal shares without weights', () => {
  const [a, b, c] = parseClassSpec('golden retriever, n02123045 ,7', imagenet);
  const hot = (v: Float32Array) => [...v.entries()].filter(([, x]) => x !== 0);
  assert.deepEqual(hot(a), [[207, 1]]);
  assert.deepEqual(hot(b), [[281, 1]]);
  assert.deepEqual(hot(c), [[7, 1]]);
  const [mix] = parseClassSpec('tabby:0.7+tiger cat:0.3', imagenet);
  assert.deepEqual(hot(mix), [[281, Math.fround(0.7)], [282, Math.fround(0.3)]]);
  const [scaled] = parseClassSpec('1:3+2:1', fmnist); // weights are relative
  assert.deepEqual(hot(scaled), [[1, 0.75], [2, 0.25]]);
  const [equal] = parseClassSpec('coat+bag+sandal', fmnist);
  assert.deepEqual(hot(equal), [[4, Math.fround(1 / 3)], [5, Math.fround(1 / 3)], [8, Math.fround(1 / 3)]]);
  const [same] = parseClassSpec('1:0.5+1:0.5', fmnist);
  assert.deepEqual(hot(same), [[1, 1]]);
  for (const v of [a, mix, scaled, equal]) assert.ok(Math.abs(v.reduce((s, x) => s + x, 0) - 1) < 1e-6);
  assert.throws(() => parseClassSpec(' , ', fmnist), /no class given/);
  assert.throws(() => parseClassSpec('coat:0', fmnist), /class weight "0" in "coat:0" must be a positive number/);
  assert.throws(() => parseClassSpec('coat:-1', fmnist), /class weight "-1"/);
  assert.throws(() => parseClassSpec('coat:x', fmnist), /class weight "x"/);
  assert.throws(() => parseClassSpec('coat:', fmnist), /must be a positive number/);
  assert.throws(() => parseClassSpec('coat+nope', fmnist), /unknown class "nope"/);
});

test('oneHot checks its indices', () => {
  assert.deepEqual([...oneHot([2, 0], 3)], [0, 0, 1, 1, 0, 0]);
  assert.throws(() => oneHot([3], 3), /class 3 out of range \[0, 2\]/);
  assert.throws(() => oneHot([-1], 3), /out of range/);
  assert.throws(() => oneHot([0.5], 3), /out of range/);
});

// ---------------------------------------------------------------------------------------------------------------
// Sampling

test('sampleZ: the documented stream, value for value (golden values from an independent Python port)', () => {
  // mulberry32 → 53-bit uniforms → Box–Muller (cos, then sin) → rejection outside [−2, 2] → ·t → float32,
  // re-implemented in Python with Python integers and libm and run once to produce these numbers
  assert.deepEqual([...sampleZ(1, 6, 1, 0)],
    [0.2718563675880432, 1.603554606437683, -0.9239500761032104, -0.8171688318252563, 0.02946566790342331, 1.2528468370437622]);
  assert.deepEqual([...sampleZ(2, 2, 0.4, 123)], [-0.27655029296875, 0.008142201229929924, 0.366599977016449, -0.4228416085243225]);
  const u = uniformSource(0);
  assert.equal(u(), 0.2664292082215081);
  assert.equal(u(), 0.2232720266744655);
});

test('sampleZ is reproducible, seed-dependent, and scales one stream by the truncation', () => {
  const a = sampleZ(16, 128, 0.7, 42);
  assert.deepEqual(a, sampleZ(16, 128, 0.7, 42));
  assert.notDeepEqual(a, sampleZ(16, 128, 0.7, 43));
  // the layout is [n, z_dim] row-major over one stream: the first rows don't depend on n
  assert.deepEqual(sampleZ(4, 128, 0.7, 42), a.subarray(0, 4 * 128));
  // the truncation multiplies the float64 draw, rounded to float32 once
  const draw = truncatedNormalSource(42);
  for (let i = 0; i < a.length; i++) assert.equal(a[i], Math.fround(0.7 * draw()));
  for (const t of [0, -0.5, 1.5, Number.NaN]) assert.throws(() => sampleZ(1, 4, t, 0), /truncation must be in \(0, 1\]/);
});

/** Standard normal density and its integral by composite Simpson's rule (independent of any erf). */
const phi = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
function integrate(f: (x: number) => number, a: number, b: number, n = 2000): number {
  const h = (b - a) / n;
  let s = f(a) + f(b);
  for (let i = 1; i < n; i++) s += f(a + i * h) * (i % 2 ? 4 : 2);
  return (s * h) / 3;
}

test('sampleZ follows truncnorm(−2, 2)·t: bounds, moments and the CDF (Kolmogorov–Smirnov)', () => {
  for (const t of [1, 0.4, 0.02]) {
    const z = sampleZ(64, 128, t, 9);
    for (const v of z) assert.ok(Math.abs(v) <= Math.fround(2 * t), `${v} outside [−2t, 2t] for t = ${t}`);
  }
  const n = 200_000;
  const z = sampleZ(n / 100, 100, 1, 1);
  let mean = 0;
  for (const v of z) mean += v / n;
  let variance = 0;
  for (const v of z) variance += (v - mean) ** 2 / (n - 1);
  const mass = integrate(phi, -2, 2);
  const wantVar = integrate((x) => x * x * phi(x), -2, 2) / mass; // = 0.7737…
  const se = Math.sqrt(wantVar / n);
  assert.ok(Math.abs(mean) < 5 * se, `mean ${mean}`);
  assert.ok(Math.abs(variance - wantVar) < 0.01, `variance ${variance}, truncnorm(−2, 2) has ${wantVar}`);
  // Kolmogorov–Smirnov against the truncated normal CDF, on a grid of 81 points
  const sorted = Float64Array.from(z).sort();
  let ks = 0;
  for (let k = 0; k <= 80; k++) {
    const x = -2 + k * 0.05;
    const cdf = integrate(phi, -2, x, 400) / mass;
    let lo = 0;
    let hi = n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid] <= x) lo = mid + 1; else hi = mid; }
    ks = Math.max(ks, Math.abs(lo / n - cdf));
  }
  assert.ok(ks < 1.63 / Math.sqrt(n), `KS distance ${ks} (1% critical value ${1.63 / Math.sqrt(n)})`);
  // before truncation the underlying normals have unit variance (bound far out: nothing is rejected)
  const wide = truncatedNormalSource(3, 50);
  let s2 = 0;
  let s1 = 0;
  for (let i = 0; i < n; i++) { const x = wide(); s1 += x; s2 += x * x; }
  const v = s2 / n - (s1 / n) ** 2;
  assert.ok(Math.abs(v - 1) < 0.015, `untruncated variance ${v}`);
});
