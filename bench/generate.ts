// Images per second of the engine at batch 1 and 8 on random weights of the published BigGAN-deep sizes, peak
// memory, and — side by side, on the very same checkpoint file, inputs and thread count — PyTorch
// (training/bench_torch.py; the reference port itself with --reference DIR) when python3-torch is installed.
//   npm run bench:generate [-- --sizes 128,256 --threads 2 --reps 3 --batches 1,8 --reference /tmp/hfref --no-torch --no-fold --width 16]
// The PyTorch model is timed as published (its spectral-norm hooks divide every weight by σ on every forward) and,
// unless --no-fold, again with σ folded into the weights once (torch.nn.utils.remove_spectral_norm), as this
// engine does at load; both ratios are printed.
// Each side runs in its own fresh process per size, one right after the other, so both see the same machine
// state and the peak memory (VmHWM) is that of one model: reading the file, folding, building the session, running.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const threads = Number(arg('threads', '2'));
const reps = Number(arg('reps', '3'));
const batches = arg('batches', '1,8').split(',').map(Number);
const truncation = 0.5;

const peakRssMiB = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
};

interface Measured { [k: `batch${number}`]: number; loadS?: number; peakRssMiB?: number; model?: string; folded?: Measured }

if (process.argv.includes('--child')) {
  // One model in a fresh process: load the checkpoint from disk as `cawa generate` does, then time batches.
  const dir = arg('child', '');
  const { readNpy } = await import('../src/io/npy.ts');
  const { loadModel } = await import('../src/model/load.ts');
  const { Generator } = await import('../src/model/generator.ts');
  const t0 = performance.now();
  const model = loadModel(dir);
  const g = await Generator.create(model.config, model.stateDict, { threads });
  const out: Measured = { loadS: (performance.now() - t0) / 1000 };
  const { z_dim: zd, num_classes: nc } = g.config;
  const zAll = readNpy(readFileSync(join(dir, 'z.npy'))).data;
  for (const batch of batches) {
    const z = zAll.subarray(0, batch * zd);
    const y = new Float32Array(batch * nc);
    for (let b = 0; b < batch; b++) y[b * nc + ((b * 37) % nc)] = 1; // the classes bench_torch.py uses
    const run = async () => { await g.forward(g.conditioning(z, y, batch), { truncation }); };
    await run(); // warm-up
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      const s = performance.now();
      await run();
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    out[`batch${batch}`] = batch / (times[Math.floor(times.length / 2)] / 1000);
  }
  out.peakRssMiB = peakRssMiB();
  await g.release();
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

const { publishedConfig, randomStateDict } = await import('../src/model/random.ts');
const { writeTorchZip } = await import('../src/io/writers.ts');
const { writeNpy } = await import('../src/io/npy.ts');
const { sampleZ } = await import('../src/model/sampling.ts');

const sizes = arg('sizes', '128,256').split(',').map(Number) as (128 | 256 | 512)[];
const reference = arg('reference', '');
// --width W narrows every layer (channel_width W instead of 128): a quick smoke run, not the published sizes
const width = Number(arg('width', '0'));
const py = '/usr/bin/python3';
const withTorch = !process.argv.includes('--no-torch') && existsSync(py) && spawnSync(py, ['-c', 'import torch']).status === 0;
const here = new URL('.', import.meta.url).pathname;
const fmt = (m: Measured) => batches.map((b) => `${m[`batch${b}`].toFixed(2)} img/s at batch ${b}`).join(', ');

function child(cmd: string, args: string[]): Measured {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Measured;
}

console.log(`threads ${threads}, ${reps} timed repetitions (median) after one warm-up, truncation ${truncation}`);
for (const size of sizes) {
  const dir = mkdtempSync(join(tmpdir(), `cawa-bench-${size}-`));
  try {
    const config = width ? { ...publishedConfig(size), channel_width: width } : publishedConfig(size);
    const entries = [...randomStateDict(config, size)].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    writeTorchZip(join(dir, 'model.pth'), entries);
    entries.length = 0;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    writeNpy(join(dir, 'z.npy'), [Math.max(...batches), config.z_dim], sampleZ(Math.max(...batches), config.z_dim, truncation, 1));

    const ts = child(process.execPath, ['--import', 'tsx', join(here, 'generate.ts'), '--child', dir,
      '--threads', String(threads), '--reps', String(reps), '--batches', batches.join(',')]);
    const name = `BigGAN-deep-${size}${width ? ` (channel_width ${width})` : ''}`;
    console.log(`channel-awareness  ${name}: ${fmt(ts)} (model loaded in ${ts.loadS!.toFixed(1)} s; peak RSS ${ts.peakRssMiB!.toFixed(0)} MiB)`);
    if (!withTorch) continue;
    const pt = child(py, [join(here, '../training/bench_torch.py'), '--checkpoint', join(dir, 'model.pth'),
      '--config', join(dir, 'config.json'), '--z', join(dir, 'z.npy'), '--threads', String(threads), '--reps', String(reps),
      '--batches', batches.join(','), '--truncation', String(truncation), ...(reference ? ['--reference', reference] : []),
      ...(process.argv.includes('--no-fold') ? [] : ['--fold-sn'])]);
    const ratio = (p: Measured) => batches.map((b) => `${(ts[`batch${b}`] / p[`batch${b}`]).toFixed(2)}× at batch ${b}`).join(', ');
    console.log(`PyTorch            ${name}: ${fmt(pt)} (${pt.model}; peak RSS ${pt.peakRssMiB!.toFixed(0)} MiB)`);
    console.log(`ratio (ours / PyTorch) ${name}: ${ratio(pt)}`);
    if (pt.folded) {
      console.log(`PyTorch, σ folded  ${name}: ${fmt(pt.folded)} (the same model after torch.nn.utils.remove_spectral_norm)`);
      console.log(`ratio (ours / PyTorch, σ folded) ${name}: ${ratio(pt.folded)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
if (!withTorch) console.log('PyTorch not measured (--no-torch, or apt-get install python3-torch): no side-by-side ratio');
