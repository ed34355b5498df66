// Images per second of the engine at batch 1 and 8 on random weights of the published BigGAN-deep sizes,
// and peak memory; then the same for PyTorch (training/bench_torch.py, same threads) when python3-torch
// is installed, so the ratio is measured side by side in one run.
//   npm run bench:generate [-- --sizes 128,256 --threads 2 --reps 3]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Generator } from '../src/model/generator.ts';
import { publishedConfig, randomStateDict } from '../src/model/random.ts';
import { sampleZ } from '../src/model/sampling.ts';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const sizes = arg('sizes', '128,256').split(',').map(Number) as (128 | 256)[];
const threads = Number(arg('threads', '2'));
const reps = Number(arg('reps', '3'));

const peakRssMiB = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
};

async function timeBatch(g: Generator, batch: number): Promise<number> {
  const { z_dim: zd, num_classes: nc } = g.config;
  const z = sampleZ(batch, zd, 0.5, 1);
  const y = new Float32Array(batch * nc);
  for (let b = 0; b < batch; b++) y[b * nc + ((b * 37) % nc)] = 1;
  const run = async () => {
    const c = g.conditioning(z, y, batch);
    await g.forward(c, { truncation: 0.5 });
  };
  await run(); // warm-up
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return batch / (times[Math.floor(times.length / 2)] / 1000);
}

const results: Record<string, Record<string, number>> = {};
for (const size of sizes) {
  const t0 = performance.now();
  const g = await Generator.create(publishedConfig(size), randomStateDict(publishedConfig(size), size), { threads });
  const loadS = (performance.now() - t0) / 1000;
  const ips1 = await timeBatch(g, 1);
  const ips8 = await timeBatch(g, 8);
  results[`ts-${size}`] = { batch1: ips1, batch8: ips8, loadS, peakRssMiB: peakRssMiB() };
  console.log(`channel-awareness  BigGAN-deep-${size}: ${ips1.toFixed(2)} img/s at batch 1, ${ips8.toFixed(2)} img/s at batch 8 (session built in ${loadS.toFixed(1)} s; peak RSS so far ${peakRssMiB().toFixed(0)} MiB)`);
  await g.release();
}

const py = '/usr/bin/python3';
const script = new URL('../training/bench_torch.py', import.meta.url).pathname;
if (existsSync(py) && spawnSync(py, ['-c', 'import torch']).status === 0 && !process.argv.includes('--no-torch')) {
  const r = spawnSync(py, [script, '--sizes', sizes.join(','), '--threads', String(threads), '--reps', String(reps)], { encoding: 'utf8' });
  if (r.status !== 0) console.log(`PyTorch benchmark failed: ${r.stderr}`);
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const m = JSON.parse(line) as { size: number; batch1: number; batch8: number };
    const ts = results[`ts-${m.size}`];
    console.log(`PyTorch            BigGAN-deep-${m.size}: ${m.batch1.toFixed(2)} img/s at batch 1, ${m.batch8.toFixed(2)} img/s at batch 8`);
    console.log(`ratio (ours / PyTorch) BigGAN-deep-${m.size}: ${(ts.batch1 / m.batch1).toFixed(2)}× at batch 1, ${(ts.batch8 / m.batch8).toFixed(2)}× at batch 8`);
  }
} else console.log('PyTorch not installed (apt-get install python3-torch): no side-by-side ratio');
