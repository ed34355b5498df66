// `cawa generate`: images or raw output from any BigGAN-deep checkpoint.
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { readNpy, writeNpy } from '../io/npy.ts';
import { IMAGE_EXTENSIONS, gridRgb, writeRgbImage } from '../io/images.ts';
import { parseClassSpec } from '../model/classes.ts';
import { openGenerator } from '../model/load.ts';
import { generate } from '../model/sample.ts';
import { sampleZ } from '../model/sampling.ts';
import { classSpace, intIn, modelOptions, progress, truncationOption } from './common.ts';

interface GenerateOpts {
  model?: string;
  weights?: string;
  threads?: number;
  classes?: string;
  z?: string;
  seed: number;
  n: number;
  truncation: number;
  out: string;
  batch: number;
  scale?: number;
  columns?: number;
}

export function register(program: Command): void {
  modelOptions(program.command('generate').description('generate images (or the raw [N,3,H,W] output as .npy) for given classes'))
    .option('-c, --classes <list>', 'comma-separated classes: index, name, WordNet id, or a mix a:0.7+b:0.3 (default: every class of small models)')
    .option('--z <file.npy>', 'latent vectors [N, z_dim] as float32 .npy, already scaled by the truncation')
    .addOption(new Option('--seed <s>', 'seed for z (ignored with --z)').default(0).argParser(intIn(0, 2 ** 32 - 1)))
    .addOption(new Option('-n, --n <n>', 'samples per class (ignored with --z)').default(1).argParser(intIn(1, 100000)))
    .addOption(truncationOption())
    .requiredOption('-o, --out <file>', 'output: .npy (raw float32 in [-1, 1]) or .png/.jpg/.webp (an image, or a grid for several)')
    .addOption(new Option('--batch <n>', 'batch size').default(8).argParser(intIn(1, 4096)))
    .addOption(new Option('--scale <k>', 'upscale each image k× in pictures (default: to at least 128 px)').argParser(intIn(1, 64)))
    .addOption(new Option('--columns <k>', 'images per row in a grid (default: samples per class, or square)').argParser(intIn(1, 4096)))
    .action(run);
}

async function run(opts: GenerateOpts): Promise<void> {
  const ext = extname(opts.out).toLowerCase();
  if (ext !== '.npy' && !IMAGE_EXTENSIONS.includes(ext)) throw new Error(`--out must end in .npy or ${IMAGE_EXTENSIONS.join('/')}, got "${opts.out}"`);
  const { generator: g, model } = await openGenerator(opts.model, { weights: opts.weights, threads: opts.threads });
  const { z_dim: zd, num_classes: nc } = g.config;
  const space = classSpace(model);
  if (!opts.classes && nc > 20) throw new Error(`--classes is required for a model with ${nc} classes`);
  const classVectors = parseClassSpec(opts.classes ?? Array.from({ length: nc }, (_, i) => i).join(','), space);

  let z: Float32Array;
  let perClass = opts.n;
  if (opts.z) {
    if (!existsSync(opts.z)) throw new Error(`--z file ${opts.z} does not exist`);
    let arr: { shape: number[]; data: Float32Array };
    try {
      arr = readNpy(readFileSync(opts.z));
    } catch (e) {
      throw new Error(`--z ${opts.z}: ${(e as Error).message}`);
    }
    if (arr.shape.length !== 2 || arr.shape[1] !== zd) throw new Error(`--z must have shape [N, ${zd}], got [${arr.shape.join(', ')}]`);
    const rows = arr.shape[0];
    if (classVectors.length !== 1 && classVectors.length !== rows) throw new Error(`--z has ${rows} rows but ${classVectors.length} classes were given (give one class, or one per row)`);
    z = arr.data;
    perClass = classVectors.length === 1 ? rows : 1;
  } else {
    z = sampleZ(classVectors.length * perClass, zd, opts.truncation, opts.seed);
  }
  const n = z.length / zd;
  const y = new Float32Array(n * nc);
  for (let i = 0; i < n; i++) y.set(classVectors[Math.floor(i / perClass) % classVectors.length], i * nc);

  const bar = progress(Math.ceil(n / opts.batch), 'generating');
  let images: Float32Array;
  try {
    images = await generate(g, { z, y, n, truncation: opts.truncation, batchSize: opts.batch, onBatch: (done) => bar.update(Math.ceil(done / opts.batch)) });
  } finally {
    bar.stop();
  }
  const R = g.arch.resolution;
  if (ext === '.npy') writeNpy(opts.out, [n, 3, R, R], images);
  else {
    const scale = opts.scale ?? Math.max(1, Math.floor(128 / R));
    const columns = opts.columns ?? (perClass > 1 && n > perClass ? perClass : undefined);
    await writeRgbImage(opts.out, gridRgb(images, n, R, { scale, columns }));
  }
  process.stderr.write(`wrote ${n} sample${n > 1 ? 's' : ''} (${R}×${R}) to ${opts.out}\n`);
  await g.release();
}
