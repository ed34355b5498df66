// Where a model comes from: the shipped default, a folder, a weights file, or a cached download by name.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveCachedModel } from '../io/cache.ts';
import { readCheckpoint } from '../io/checkpoint.ts';
import type { StateDict } from '../io/tensor.ts';
import { parseConfig, type BigGANConfig } from './config.ts';
import { Generator, type GeneratorOptions } from './generator.ts';

/** The model that ships with the package (Fashion-MNIST, trained in training/). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/fmnist/', import.meta.url));

const WEIGHT_NAMES = ['pytorch_model.bin', 'model.safetensors'];

export interface ModelFiles {
  dir: string;
  config: string;
  weights: string;
  /** classes.json beside the config, when the model ships one */
  classes?: string;
}

function weightsInFolder(dir: string): string {
  for (const name of WEIGHT_NAMES) if (existsSync(join(dir, name))) return join(dir, name);
  const pth = readdirSync(dir).filter((f) => f.endsWith('.pth') || f.endsWith('.pt'));
  if (pth.length === 1) return join(dir, pth[0]);
  if (pth.length > 1) throw new Error(`${dir} holds several weight files (${pth.join(', ')}): pick one with --weights`);
  throw new Error(`${dir} holds no weights: expected ${WEIGHT_NAMES.join(', ')} or one *.pth`);
}

/** Resolve `--model` (folder | weights file | cached name; default: the shipped model) and `--weights`. */
export function resolveModelFiles(model?: string, weights?: string): ModelFiles {
  let dir: string;
  let w = weights;
  if (!model) dir = DEFAULT_MODEL_DIR;
  else if (existsSync(model) && statSync(model).isDirectory()) dir = model;
  else if (existsSync(model)) {
    dir = dirname(model);
    w ??= model;
  } else {
    const cached = resolveCachedModel(model);
    if (!cached) throw new Error(`model "${model}" is neither a folder, a weights file, nor a downloaded model (try \`cawa download ${model}\`)`);
    dir = cached;
  }
  const config = join(dir, 'config.json');
  if (!existsSync(config)) throw new Error(`no config.json in ${dir}: a model folder holds config.json and the weights`);
  if (w && !existsSync(w)) throw new Error(`weights file ${w} does not exist`);
  const classes = join(dir, 'classes.json');
  return { dir, config, weights: w ?? weightsInFolder(dir), classes: existsSync(classes) ? classes : undefined };
}

export interface LoadedModel {
  files: ModelFiles;
  config: BigGANConfig;
  stateDict: StateDict;
  /** class labels from classes.json, if shipped */
  labels?: string[];
}

export function loadModel(model?: string, weights?: string): LoadedModel {
  const files = resolveModelFiles(model, weights);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(files.config, 'utf8'));
  } catch (e) {
    throw new Error(`${files.config}: not valid JSON (${(e as Error).message})`);
  }
  const config = parseConfig(raw, files.config);
  const stateDict = readCheckpoint(files.weights);
  let labels: string[] | undefined;
  if (files.classes) {
    labels = JSON.parse(readFileSync(files.classes, 'utf8')) as string[];
    if (!Array.isArray(labels) || labels.length !== config.num_classes) {
      throw new Error(`${files.classes}: expected a list of ${config.num_classes} class names`);
    }
  }
  return { files, config, stateDict, labels };
}

export async function openGenerator(model?: string, opts: GeneratorOptions & { weights?: string } = {}) {
  const loaded = loadModel(model, opts.weights);
  const generator = await Generator.create(loaded.config, loaded.stateDict, opts);
  return { generator, model: loaded, name: model ?? basename(DEFAULT_MODEL_DIR.replace(/\/$/, '')) };
}
