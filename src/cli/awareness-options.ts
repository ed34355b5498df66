// Options shared by the awareness commands, and opening a model with its class names.
import { Command, Option } from 'commander';
import { DEFINITIONS, computeAwareness, type Awareness, type Definition, type Variant } from '../awareness/compute.ts';
import type { ClassSpace } from '../model/classes.ts';
import type { Generator } from '../model/generator.ts';
import { openGenerator } from '../model/load.ts';
import { classSpace, intIn, modelOptions, truncationOption } from './common.ts';

export interface AwarenessCliOpts {
  model?: string;
  weights?: string;
  threads?: number;
  truncation: number;
  variant: Variant;
  definition: Definition;
  quadrature: number;
  json?: boolean;
}

export function awarenessOptions(cmd: Command): Command {
  return modelOptions(cmd)
    .addOption(truncationOption())
    .addOption(new Option('--variant <v>', 'expected: average over z as the model samples it; zero: z = 0 (fastest)').choices(['expected', 'zero']).default('expected'))
    .addOption(new Option('--definition <d>', 'downstream: √E[h²] × gain to the image (default); rms: √E[h²]; activation: E[h]').choices(DEFINITIONS).default('downstream'))
    .addOption(new Option('--quadrature <k>', 'Gauss–Hermite nodes over z (expected variant)').default(5).argParser(intIn(1, 64)))
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

export function awarenessFor(m: OpenedModel, o: AwarenessCliOpts, layers?: number[]): Promise<Awareness> {
  return computeAwareness(m.g, { truncation: o.truncation, variant: o.variant, definition: o.definition, quadrature: o.quadrature, layers, threads: o.threads });
}
