// `cawa findings`: the paper's findings measured on a model, and how well each awareness definition
// ranks channels like the ablation does. Prints Markdown (docs/findings.md is made with it) or JSON.
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withScores } from '../awareness/compute.ts';
import { computeFindings, type Findings } from '../awareness/findings.ts';
import { validateAwareness, type Validation } from '../awareness/validate.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { resolveModelFiles } from '../model/load.ts';
import { awarenessFor, awarenessOptions, openForAwareness, type AwarenessCliOpts, type OpenedModel } from './awareness-options.ts';
import { intIn, printJson, progress } from './common.ts';

interface Opts extends AwarenessCliOpts {
  groups?: string;
  samples: number;
  validate: boolean;
  out?: string;
}

export function register(program: Command): void {
  awarenessOptions(program.command('findings').description('measure the findings (concentration, shared channels within class families, latent channels) and validate awareness against ablation')
    .option('--groups <file>', 'JSON {family: [class, …]} (default: groups.json beside the model, if any)')
    .addOption(new Option('--samples <n>', 'images per class for the reference ablation').default(8).argParser(intIn(1, 4096)))
    .option('--no-validate', 'skip the ablation (fast)')
    .option('-o, --out <file.json>', 'also save everything as JSON'))
    .action(run);
}

function loadGroups(m: OpenedModel, o: Opts): Record<string, number[]> {
  let file = o.groups;
  if (!file) {
    const beside = join(resolveModelFiles(o.model, o.weights).dir, 'groups.json');
    if (existsSync(beside)) file = beside;
  }
  if (!file) return {};
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, (string | number)[]>;
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.map((c) => m.space.resolve(String(c)))]));
}

async function run(o: Opts): Promise<void> {
  const m = await openForAwareness(o);
  const families = loadGroups(m, o);
  const a = await awarenessFor(m, o);
  const findings = computeFindings(a, families);
  let validation: Validation | undefined;
  if (o.validate) {
    // progress in per-mille of all layers' ablation work; each layer reports its own fraction
    const layers = m.g.arch.ccbns.length;
    const bar = progress(1000, `ablation of every channel (${layers} layers)`);
    validation = await validateAwareness(m.g, {
      truncation: o.truncation, samples: o.samples,
      onProgress: (li, done, total) => bar.update(Math.round((1000 * (li + done / total)) / layers)),
    });
    bar.stop();
  }
  const ablationFindings = validation ? computeFindings(withScores(a, validation.ablation), families) : undefined;
  const { ablation: _, ...validationSummary } = validation ?? { ablation: undefined };
  const result = { model: m.name, truncation: a.truncation, variant: a.variant, definition: a.definition, findings, ablationFindings, validation: validation ? validationSummary : undefined };
  if (o.out) writeFileAtomic(o.out, `${JSON.stringify(result, null, 1)}\n`);
  if (o.json) printJson(result);
  else {
    process.stdout.write(markdown(m, findings, validation, a.definition, a.variant));
    if (ablationFindings) process.stdout.write(`\n### The same findings measured on the ablation effect\n\n${markdown(m, ablationFindings, undefined, `ablation (${o.samples} images per class)`, 'measured')}`);
  }
  await m.g.release();
}

const f3 = (x: number) => x.toFixed(3);

function markdown(m: OpenedModel, f: Findings, v: Validation | undefined, definition: string, variant: string): string {
  const L: string[] = [];
  const fam = Object.entries(f.families).map(([k, cs]) => `${k}: ${cs.map((c) => m.space.label(c)).join(', ')}`).join('; ');
  L.push(`Model: ${m.name}; awareness: ${definition}, ${variant} variant. Families: ${fam || 'none'}.`, '');
  L.push(`| layer | channels | channels for ${f.share * 100}% (mean, min–max) | fraction | top-k overlap within / across families | cosine within / across | latent-oriented | shared by ≥90% of classes |`);
  L.push('|---|---|---|---|---|---|---|---|');
  for (const l of f.layers) {
    L.push(`| ${l.layer} | ${l.channels} | ${l.core.mean.toFixed(1)} (${l.core.min}–${l.core.max}) | ${f3(l.core.fraction)} | ${f3(l.overlap.within)} / ${f3(l.overlap.across)} | ${f3(l.cosine.within)} / ${f3(l.cosine.across)} | ${l.latentChannels} | ${l.sharedChannels} |`);
  }
  const s = f.summary;
  L.push('', `Mean over layers: ${f3(s.coreFraction)} of a layer's channels hold ${f.share * 100}% of a class's awareness; top-k overlap ${f3(s.overlapWithin)} within families vs ${f3(s.overlapAcross)} across; cosine ${f3(s.cosineWithin)} vs ${f3(s.cosineAcross)}; ${s.latentChannels} of ${s.totalChannels} channels are latent-oriented. Top-k: ${f.topK}.`, '');
  if (v) {
    const names = Object.keys(v.mean);
    L.push(`Spearman correlation with the ablation effect (${v.samples} images per class), mean over classes:`, '');
    L.push(`| layer | ${names.join(' | ')} | ceiling |`, `|---|${names.map(() => '---').join('|')}|---|`);
    for (const r of v.layers) L.push(`| ${r.layer} | ${names.map((n) => f3(r.spearman[n])).join(' | ')} | ${f3(r.ceiling)} |`);
    L.push(`| **mean, all CCBNs** | ${names.map((n) => `**${f3(v.mean[n])}**`).join(' | ')} | ${f3(v.ceiling)} |`);
    L.push(`| **mean, blocks' bn_0** | ${names.map((n) => `**${f3(v.meanBn0[n])}**`).join(' | ')} | ${f3(v.ceilingBn0)} |`, '');
    L.push(`Ceiling: √ of the reference's split-half reliability (two independent halves of its ${v.samples} images per class, Spearman–Brown corrected) — the most a perfect predictor of the true ablation effect can reach against this finite reference.`, '');
    L.push(`Cost (seconds, all layers × all classes): ${Object.entries(v.cost).map(([k, s]) => `${k} ${s.toFixed(3)}`).join(', ')}; reference ablation ${v.layers.reduce((s, r) => s + r.ablationSeconds, 0).toFixed(1)}.`, '');
  }
  return `${L.join('\n')}\n`;
}
