// `cawa awareness`: compute awareness for every CCBN layer and class and save it (.npz or .safetensors
// plus a JSON index), or print a per-layer summary.
import { Command } from 'commander';
import { coreChannels } from '../awareness/analyses.ts';
import { saveAwareness } from '../awareness/save.ts';
import { awarenessFor, awarenessOptions, openForAwareness, type AwarenessCliOpts } from './awareness-options.ts';
import { printJson } from './common.ts';

interface Opts extends AwarenessCliOpts {
  out?: string;
}

export function register(program: Command): void {
  awarenessOptions(program.command('awareness').description('compute channel awareness for every CCBN layer, class and channel')
    .option('-o, --out <file>', 'save to .npz (numpy) or .safetensors, with a .json index beside it'))
    .addHelpText('after', '\nIn Python: z = np.load("aw.npz"); z["generator.layers.0.bn_0/raw"]  # [classes, channels]\n')
    .action(run);
}

async function run(o: Opts): Promise<void> {
  if (o.out && !/\.(npz|safetensors)$/.test(o.out)) throw new Error(`--out must end in .npz or .safetensors, got "${o.out}"`);
  const m = await openForAwareness(o);
  const t0 = performance.now();
  const a = await awarenessFor(m, o);
  const ms = performance.now() - t0;
  const summary = a.layers.map((L) => {
    let core = 0;
    for (let c = 0; c < a.numClasses; c++) core += coreChannels(L.raw, L.channels, c, 0.8).length;
    let latent = 0;
    for (const v of L.latent) latent += v;
    return { layer: L.ccbn.name, block: L.ccbn.block, j: L.ccbn.j, channels: L.channels, meanChannelsFor80: core / a.numClasses, latentChannels: latent };
  });
  let files: { data: string; index: string } | undefined;
  if (o.out) files = saveAwareness(o.out, a, { model: m.name, classes: Array.from({ length: a.numClasses }, (_, i) => m.space.label(i)) });
  if (o.json) printJson({ model: m.name, truncation: a.truncation, variant: a.variant, definition: a.definition, classes: a.numClasses, milliseconds: ms, files, layers: summary });
  else {
    process.stdout.write(`${m.name}: ${a.layers.length} CCBN layers × ${a.numClasses} classes in ${ms.toFixed(0)} ms (${a.definition}, ${a.variant}, truncation ${a.truncation})\n`);
    process.stdout.write('layer                       channels  channels for 80%  latent-oriented\n');
    for (const s of summary) process.stdout.write(`${s.layer.padEnd(28)}${String(s.channels).padStart(8)}  ${s.meanChannelsFor80.toFixed(1).padStart(16)}  ${String(s.latentChannels).padStart(15)}\n`);
    if (files) process.stdout.write(`wrote ${files.data} and ${files.index}\n`);
  }
  await m.g.release();
}
