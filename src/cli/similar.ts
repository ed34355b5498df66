// `cawa similar`: the classes whose channels resemble a class's the most.
import { Command, Option } from 'commander';
import { parseOneClass } from '../model/classes.ts';
import { findCcbn } from '../model/config.ts';
import { classSimilarityRow } from '../awareness/similarity.ts';
import { awarenessFor, awarenessOptions, openForAwareness, type AwarenessCliOpts } from './awareness-options.ts';
import { intIn, printJson } from './common.ts';

interface Opts extends AwarenessCliOpts {
  class: string;
  layer?: string;
  n: number;
  top: number;
}

export function register(program: Command): void {
  awarenessOptions(program.command('similar').description('list the classes nearest to a class by channel awareness')
    .requiredOption('-c, --class <class>', 'class: index, name or WordNet id')
    .option('-l, --layer <layer>', 'compare in one layer only (default: every CCBN layer, each normalised)')
    .addOption(new Option('-n, --n <n>', 'how many classes').default(5).argParser(intIn(1, 100000)))
    .addOption(new Option('--top <k>', 'top-k channels per layer for the overlap measure').default(10).argParser(intIn(1, 1 << 20))))
    .action(run);
}

async function run(o: Opts): Promise<void> {
  const m = await openForAwareness(o);
  const cls = parseOneClass(o.class, m.space);
  const layers = o.layer ? [findCcbn(m.g.arch, o.layer).index] : undefined;
  const a = await awarenessFor(m, o, layers);
  const row = classSimilarityRow(a, cls, o.top);
  const order = Array.from({ length: a.numClasses }, (_, i) => i).filter((i) => i !== cls)
    .sort((x, y) => row.cosine[y] - row.cosine[x] || x - y).slice(0, o.n);
  const nearest = order.map((c) => ({ class: c, label: m.space.label(c), cosine: row.cosine[c], overlap: row.overlap[c] }));
  if (o.json) {
    printJson({ model: m.name, class: { index: cls, label: m.space.label(cls) }, layers: a.layers.map((l) => l.ccbn.name), top: o.top, nearest });
  } else {
    process.stdout.write(`classes nearest to ${cls} (${m.space.label(cls)}) by cosine of relative awareness over ${a.layers.length} layer(s); overlap = shared top-${o.top} channels per layer\n`);
    for (const r of nearest) process.stdout.write(`${String(r.class).padStart(5)}  ${r.label.padEnd(28)} cosine ${r.cosine.toFixed(3)}  overlap ${(100 * r.overlap).toFixed(0)}%\n`);
  }
  await m.g.release();
}
