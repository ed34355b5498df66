// `cawa report`: a self-contained HTML report of a model's channel awareness.
import { Command, Option } from 'commander';
import { parseOneClass } from '../model/classes.ts';
import { findCcbn } from '../model/config.ts';
import { writeReport } from '../report/report.ts';
import { awarenessFor, awarenessOptions, openForAwareness, type AwarenessCliOpts } from './awareness-options.ts';
import { intIn } from './common.ts';

interface Opts extends AwarenessCliOpts {
  out: string;
  classes?: string;
  layers?: string;
  maxChannels: number;
}

export function register(program: Command): void {
  awarenessOptions(program.command('report').description('write an HTML report with awareness heatmaps, concentration curves, shared channels and class similarity')
    .requiredOption('-o, --out <dir>', 'output folder (index.html and one .svg per plot)')
    .option('--classes <list>', 'comma-separated classes to show (default: all, up to 32)')
    .option('--layers <list>', 'comma-separated layers for heatmaps and curves (default: each GenBlock\'s first CCBN)')
    .addOption(new Option('--max-channels <n>', 'channels per heatmap (the most aware are kept)').default(256).argParser(intIn(8, 4096))))
    .action(run);
}

async function run(o: Opts): Promise<void> {
  const m = await openForAwareness(o);
  const nc = m.g.config.num_classes;
  let picked = Array.from({ length: nc }, (_, i) => i);
  if (o.classes) picked = o.classes.split(',').map((s) => parseOneClass(s, m.space));
  else if (nc > 32) {
    picked = picked.slice(0, 16);
    process.stderr.write(`cawa: ${nc} classes: showing the first 16; choose others with --classes\n`);
  }
  const t0 = performance.now();
  const a = await awarenessFor(m, o, undefined, picked);
  const seconds = (performance.now() - t0) / 1000;
  const focus = o.layers ? o.layers.split(',').map((l) => a.layers[findCcbn(m.g.arch, l).index]) : undefined;
  const path = await writeReport(o.out, { model: m.name, labels: picked.map((c) => m.space.label(c)), awareness: a, focus, maxChannels: o.maxChannels, seconds });
  process.stderr.write(`wrote ${path}\n`);
  await m.g.release();
}
