// Time to compute channel awareness on a BigGAN-deep-256-size model with random weights (1000 classes,
// z and class embedding 128-dim, channel_width 128: 12 GenBlocks, 48 CCBNs, 24192 channels), against the
// targets of issue 4: one class of the first block's bn_0 (2048 channels) ≤ 0.1 ms; all CCBN layers ×
// 1000 classes ≤ 300 ms for the z = 0 variant and ≤ 2 s for the default variant that averages over z.
//   npm run bench:awareness [-- --threads 2 --reps 7 --width 128 --definition downstream]
// Figures are medians over repetitions after a first, cold call (which also prepares what is kept per
// model: weight tables, the class-driven variances, the downstream gains, the folded class table and the
// onnxruntime sessions; its time is printed too). Floating-point work is counted from the shapes as in
// docs/method.md §2: 4·N·z_dim·W for the two GEMMs (μ_γ, μ_β) plus ~30·K·N·W elementwise (K quadrature
// nodes, 1 for z = 0), N classes, W channels.
import { cpus, loadavg } from 'node:os';
import { computeAwareness, allClasses, type Definition, type Variant } from '../src/awareness/compute.ts';
import { Generator } from '../src/model/generator.ts';
import { publishedConfig, randomStateDict } from '../src/model/random.ts';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const threads = Number(arg('threads', '2'));
const reps = Number(arg('reps', '7'));
const width = Number(arg('width', '128'));
const definition = arg('definition', 'downstream') as Definition;
const quadrature = 5;

const config = { ...publishedConfig(256), channel_width: width };
const t0 = performance.now();
const g = await Generator.create(config, randomStateDict(config, 256), { threads });
const setupS = (performance.now() - t0) / 1000;
const { z_dim: zd, num_classes: nc } = config;
const W = g.arch.ccbns.reduce((s, c) => s + c.channels, 0);
const C0 = g.arch.ccbns[0].channels;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** cold first call, then the median of `n` calls, in ms */
async function time(n: number, f: () => Promise<unknown>) {
  let s = performance.now();
  await f();
  const cold = performance.now() - s;
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    s = performance.now();
    await f();
    xs.push(performance.now() - s);
  }
  return { cold, median: median(xs), min: Math.min(...xs) };
}
const flops = (N: number, width: number, K: number) => ({ gemm: 4 * N * zd * width, elementwise: 30 * K * N * width });
const fmtFlops = (f: { gemm: number; elementwise: number }) => {
  const u = (x: number) => (x >= 1e9 ? `${(x / 1e9).toFixed(2)} GFLOP` : x >= 1e6 ? `${(x / 1e6).toFixed(2)} MFLOP` : `${(x / 1e3).toFixed(0)} kFLOP`);
  return `${u(f.gemm + f.elementwise)} (GEMMs ${u(f.gemm)} + elementwise ${u(f.elementwise)})`;
};
const fmtMs = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`);
const verdict = (ms: number, target: number) => (ms <= target ? 'meets' : `MISSES (${(ms / target).toFixed(1)}×)`);

console.log(`BigGAN-deep-256 size, random weights: ${nc} classes, z_dim ${zd}, channel_width ${width}, ${g.arch.blocks.length} GenBlocks, ${g.arch.ccbns.length} CCBNs, ${W} channels; first block's bn_0 has ${C0}`);
console.log(`definition ${definition}, ${quadrature}-node quadrature for 'expected'; onnxruntime threads ${threads}; ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes share the machine: figures are what this run got)`);
console.log(`model built in ${setupS.toFixed(1)} s`);

// 1. one class, the first block's bn_0
const one = [allClasses(nc)[207]];
for (const variant of ['zero', 'expected'] as Variant[]) {
  const r = await time(Math.max(50, reps * 30), () => computeAwareness(g, { classes: one, layers: [0], variant, definition, threads }));
  const f = flops(1, C0, variant === 'zero' ? 1 : quadrature);
  console.log(`one class, first block's bn_0 (${C0} ch), ${variant.padEnd(8)}: ${fmtMs(r.median).padStart(9)} median (min ${fmtMs(r.min)})  target ≤ 0.1 ms: ${verdict(r.median, 0.1)};  ${fmtFlops(f)}; first call ${fmtMs(r.cold)}`);
}
const fold = flops(nc, C0, 0).gemm;
console.log(`  (the TypeScript engine reads the class's μ_γ, μ_β from the class embedding folded once into the layer's weights: ${(fold / 1e9).toFixed(2)} GFLOP, part of the first call; per call it does the elementwise work only)`);

// 2. all CCBN layers × all classes
for (const [variant, target] of [['zero', 300], ['expected', 2000]] as [Variant, number][]) {
  const r = await time(reps, () => computeAwareness(g, { variant, definition, threads }));
  const f = flops(nc, W, variant === 'zero' ? 1 : quadrature);
  const rate = (f.gemm + f.elementwise) / (r.median / 1000) / 1e9;
  console.log(`all ${g.arch.ccbns.length} CCBNs × ${nc} classes, ${variant.padEnd(8)}: ${fmtMs(r.median).padStart(9)} median (min ${fmtMs(r.min)})  target ≤ ${target} ms: ${verdict(r.median, target)};  ${fmtFlops(f)}, ${rate.toFixed(1)} GFLOP/s; first call ${fmtMs(r.cold)}`);
}
await g.release();
