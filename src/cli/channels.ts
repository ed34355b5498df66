// `cawa channels`: the most aware channels of a class in one CCBN layer, with their kind.
import { Command, Option } from 'commander';
import { rankChannels } from '../awareness/analyses.ts';
import { parseOneClass } from '../model/classes.ts';
import { findCcbn } from '../model/config.ts';
import { awarenessFor, awarenessOptions, openForAwareness, type AwarenessCliOpts } from './awareness-options.ts';
import { intIn, printJson } from './common.ts';

interface Opts extends AwarenessCliOpts {
  class?: string;
  layer: string;
  top: number;
  kind: 'all' | 'class' | 'latent';
}

export function register(program: Command): void {
  awarenessOptions(program.command('channels').description('list the channels most aware of a class in one layer')
    .option('-c, --class <class>', 'class: index, name or WordNet id (optional with --kind latent)')
    .option('-l, --layer <layer>', 'GenBlock number (its first CCBN, the paper\'s "layer"), block.j, or a module path such as layers.6.bn_2', '0')
    .addOption(new Option('-k, --top <k>', 'how many channels').default(10).argParser(intIn(1, 1 << 20)))
    .addOption(new Option('--kind <kind>', 'all channels, only class-oriented, or only latent-oriented (shared) ones').choices(['all', 'class', 'latent']).default('all')))
    .addHelpText('after', '\nExamples:\n  cawa channels --class Sneaker --layer 2 --top 5\n  cawa channels --layer layers.6.bn_2 --kind latent --json\n')
    .action(run);
}

async function run(o: Opts): Promise<void> {
  const m = await openForAwareness(o);
  const spec = findCcbn(m.g.arch, o.layer);
  if (o.class === undefined && o.kind !== 'latent') throw new Error('--class is required (or use --kind latent to list the shared channels)');
  const cls = o.class !== undefined ? parseOneClass(o.class, m.space) : undefined;
  const a = await awarenessFor(m, o, [spec.index]);
  const L = a.layers[0];
  const C = L.channels;
  let order: number[];
  if (cls !== undefined) order = Array.from(rankChannels(L.raw, C, cls));
  else order = Array.from({ length: C }, (_, k) => k).sort((x, y) => L.latentShare[y] - L.latentShare[x] || x - y);
  if (o.kind !== 'all') order = order.filter((k) => (L.latent[k] === 1) === (o.kind === 'latent'));
  const rows = order.slice(0, o.top).map((k) => ({
    channel: k,
    awareness: cls !== undefined ? L.raw[cls * C + k] : meanOver(L.raw, C, a.numClasses, k),
    relative: cls !== undefined ? L.relative[cls * C + k] : meanOver(L.relative, C, a.numClasses, k),
    activation: cls !== undefined ? L.activation[cls * C + k] : meanOver(L.activation, C, a.numClasses, k),
    kind: L.latent[k] ? 'latent' : 'class',
    latentShare: L.latentShare[k],
  }));
  const layer = { name: spec.name, block: spec.block, j: spec.j, channels: C, resolution: spec.res };
  const classInfo = cls !== undefined ? { index: cls, label: m.space.label(cls) } : null;
  if (o.json) {
    printJson({ model: m.name, class: classInfo, layer, truncation: a.truncation, variant: a.variant, definition: a.definition, kind: o.kind, channels: rows });
  } else {
    const head = cls !== undefined ? `class ${cls} (${m.space.label(cls)})` : 'all classes (mean)';
    process.stdout.write(`${spec.name} (block ${spec.block}, bn_${spec.j}, ${C} channels, ${spec.res}×${spec.res}) — ${head}; ${a.definition} awareness, ${a.variant} variant, truncation ${a.truncation}\n`);
    process.stdout.write(`${'rank'.padStart(4)} ${'channel'.padStart(7)} ${'awareness'.padStart(10)} ${'share'.padStart(7)} ${'E[h]'.padStart(8)}  kind    latent share\n`);
    rows.forEach((r, i) => {
      process.stdout.write(`${String(i + 1).padStart(4)} ${String(r.channel).padStart(7)} ${r.awareness.toFixed(4).padStart(10)} ${(100 * r.relative).toFixed(2).padStart(6)}% ${r.activation.toFixed(4).padStart(8)}  ${r.kind.padEnd(7)} ${r.latentShare.toFixed(2)}\n`);
    });
    if (rows.length === 0) process.stdout.write(`no ${o.kind}-oriented channels in this layer\n`);
  }
  await m.g.release();
}

function meanOver(a: Float32Array, C: number, N: number, k: number): number {
  let s = 0;
  for (let c = 0; c < N; c++) s += a[c * C + k];
  return s / N;
}
