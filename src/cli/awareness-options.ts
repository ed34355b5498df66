// Options shared by the awareness commands, and opening a model with its class names.
import { Command, Option } from 'commander';
import { DEFINITIONS, allClasses, computeAwareness, withScores, type Awareness, type Definition, type Variant } from '../awareness/compute.ts';
import { taylorEffect } from '../awareness/taylor.ts';
import type { ClassSpace } from '../model/classes.ts';
import type { Generator } from '../model/generator.ts';
import { openGenerator } from '../model/load.ts';
import { classSpace, intIn, modelOptions, progress, truncationOption } from './common.ts';

export interface AwarenessCliOpts {
  model?: string;
  weights?: string;
  threads?: number;
  truncation: number;
  variant: Variant;
  definition: Definition | 'taylor';
  quadrature: number;
  taylorSamples: number;
  taylorProbes: number;
  seed: number;
  json?: boolean;
}

export function awarenessOptions(cmd: Command): Command {
  return modelOptions(cmd)
    .addOption(truncationOption())
    .addOption(new Option('--variant <v>', 'expected: average over z as the model samples it; zero: z = 0 (fastest)').choices(['expected', 'zero']).default('expected'))
    .addOption(new Option('--definition <d>', 'weights only — downstream: √E[h²] × gain to the image (default); rms: √E[h²]; activation: E[h]. '
      + 'Measured — taylor: first-order ablation effect ‖J_k h_k‖ from forward+backward passes (slower, ranks channels like ablation; docs/findings.md)')
      .choices([...DEFINITIONS, 'taylor']).default('downstream'))
    .addOption(new Option('--quadrature <k>', 'Gauss–Hermite nodes over z (expected variant)').default(5).argParser(intIn(1, 64)))
    .addOption(new Option('--taylor-samples <n>', 'taylor: images (z) per class').default(16).argParser(intIn(1, 4096)))
    .addOption(new Option('--taylor-probes <n>', 'taylor: random output projections per image').default(8).argParser(intIn(1, 256)))
    .addOption(new Option('--seed <s>', 'taylor: seed of the sampled z').default(0).argParser(intIn(0, 2 ** 31 - 1)))
    .option('--json', 'print machine-readable JSON');
}

export interface OpenedModel {
  g: Generator;
  space: ClassSpace;
  name: string;
}

export async function openForAwareness(o: AwarenessCliOpts): Promise<OpenedModel> {
  const { generator: g, model, name } = await openGenerator(o.model, { weights: o.weights, threads: o.threads });
  return { g, space: classSpace(model), name };
}

/**
 * Awareness as the options ask: a weights-only definition, or the Taylor estimate, which keeps the weights-only
 * fields (kinds, latent shares, expected activations) and replaces the scores with the measured ones.
 */
export async function awarenessFor(m: OpenedModel, o: AwarenessCliOpts, layers?: number[], classIndices?: number[]): Promise<Awareness> {
  const all = allClasses(m.g.config.num_classes);
  const classes = classIndices?.map((c) => all[c]);
  // the Taylor estimate keeps the default weights-only fields and replaces their scores
  const definition = o.definition === 'taylor' ? 'downstream' : o.definition;
  const a = await computeAwareness(m.g, { truncation: o.truncation, variant: o.variant, definition, quadrature: o.quadrature, layers, classes, threads: o.threads });
  if (o.definition !== 'taylor') return a;
  const idx = a.layers.map((L) => L.ccbn.index);
  const bar = progress(1000, 'taylor estimate (‰ of the passes)');
  const scores = await taylorEffect(m.g, classes ?? all, idx, {
    truncation: o.truncation, samples: o.taylorSamples, probes: o.taylorProbes, seed: o.seed,
    onProgress: (d, n) => bar.update(Math.round((1000 * d) / n)),
  });
  bar.stop();
  return { ...withScores(a, scores), definition: 'taylor' };
}
