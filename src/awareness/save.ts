// Saving awareness so that anyone can open it: `.npz` (numpy: np.load) or `.safetensors`, plus a JSON
// index beside it naming every array, layer and class. Both files are written atomically.
import { zipSync } from 'fflate';
import { readFileSync } from 'node:fs';
import { unzipSync } from 'fflate';
import { writeFileAtomic } from '../io/atomic.ts';
import { encodeNpy, readNpy } from '../io/npy.ts';
import { encodeSafetensors } from '../io/writers.ts';
import type { Awareness } from './compute.ts';

export interface SavedIndex {
  format: 'channel-awareness/1';
  model: string;
  truncation: number;
  variant: string;
  definition: string;
  quadrature: number;
  latentThreshold: number;
  classes: string[];
  layers: { name: string; index: number; block: number; j: number; channels: number; resolution: number; arrays: Record<string, string> }[];
  arrays: { name: string; shape: number[]; description: string }[];
}

const DESCRIPTIONS: Record<string, string> = {
  raw: 'awareness, chosen definition [classes, channels]',
  relative: 'awareness normalised over the layer\'s channels (rows sum to 1) [classes, channels]',
  activation: 'expected post-ReLU activation E[h] [classes, channels]',
  rms: 'root mean square of the post-ReLU activation √E[h²] [classes, channels]',
  latent_share: 'share of the modulation variance driven by z [channels]',
  latent: '1 = latent-oriented (shared) channel, 0 = class-oriented [channels]',
};

function entries(a: Awareness) {
  const out: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const L of a.layers) {
    const p = L.ccbn.name;
    const N = a.numClasses;
    const C = L.channels;
    out.push({ name: `${p}/raw`, shape: [N, C], data: L.raw });
    out.push({ name: `${p}/relative`, shape: [N, C], data: L.relative });
    out.push({ name: `${p}/activation`, shape: [N, C], data: L.activation });
    out.push({ name: `${p}/rms`, shape: [N, C], data: L.rms });
    out.push({ name: `${p}/latent_share`, shape: [C], data: L.latentShare });
    out.push({ name: `${p}/latent`, shape: [C], data: Float32Array.from(L.latent) });
  }
  return out;
}

/** Write `path` (.npz or .safetensors) and `path` with .json appended… rather: index at indexPath(path). */
export function saveAwareness(path: string, a: Awareness, meta: { model: string; classes: string[] }): { data: string; index: string } {
  const es = entries(a);
  const index: SavedIndex = {
    format: 'channel-awareness/1',
    model: meta.model,
    truncation: a.truncation,
    variant: a.variant,
    definition: a.definition,
    quadrature: a.quadrature,
    latentThreshold: a.latentThreshold,
    classes: meta.classes,
    layers: a.layers.map((L) => ({
      name: L.ccbn.name, index: L.ccbn.index, block: L.ccbn.block, j: L.ccbn.j, channels: L.channels, resolution: L.ccbn.res,
      arrays: Object.fromEntries(Object.keys(DESCRIPTIONS).map((k) => [k, `${L.ccbn.name}/${k}`])),
    })),
    arrays: es.map((e) => ({ name: e.name, shape: e.shape, description: DESCRIPTIONS[e.name.split('/').pop()!] })),
  };
  let bytes: Uint8Array;
  if (path.endsWith('.npz')) {
    const files: Record<string, [Uint8Array, { level: 0 }]> = {};
    for (const e of es) files[`${e.name}.npy`] = [encodeNpy(e.shape, e.data), { level: 0 }];
    bytes = zipSync(files);
  } else if (path.endsWith('.safetensors')) {
    bytes = encodeSafetensors(es, { format: index.format, model: meta.model, truncation: String(a.truncation), variant: a.variant, definition: a.definition });
  } else {
    throw new Error(`--out must end in .npz or .safetensors, got "${path}"`);
  }
  const indexPath = indexPathFor(path);
  writeFileAtomic(path, bytes);
  writeFileAtomic(indexPath, `${JSON.stringify(index, null, 1)}\n`);
  return { data: path, index: indexPath };
}

export function indexPathFor(path: string): string {
  return path.replace(/\.(npz|safetensors)$/, '.json');
}

/** Read one array back from a saved .npz (used by tests and by `cawa report --from`). */
export function readNpzArray(path: string, name: string): { shape: number[]; data: Float32Array } {
  const files = unzipSync(readFileSync(path), { filter: (f) => f.name === `${name}.npy` });
  const f = files[`${name}.npy`];
  if (!f) throw new Error(`${path} holds no array ${name}`);
  return readNpy(f);
}
