// Class names ↔ indices, and the `--classes` syntax: an index, a name, a WordNet id (1000-class
// models), or a soft mix `a:0.7+b:0.3`. Names match case-insensitively with `_` and space alike.
import { readFileSync } from 'node:fs';

const IMAGENET_FILE = new URL('./imagenet-classes.json', import.meta.url);

const normalise = (s: string) => s.trim().toLowerCase().replace(/[_\s]+/g, ' ');

export class ClassSpace {
  private readonly byName = new Map<string, number[]>();

  private constructor(
    /** display label of each class */
    readonly labels: string[],
    /** WordNet ids, for ImageNet models */
    readonly wnids?: string[],
  ) {
    labels.forEach((l, i) => {
      const k = normalise(l);
      this.byName.set(k, [...(this.byName.get(k) ?? []), i]);
    });
    wnids?.forEach((w, i) => this.byName.set(w.toLowerCase(), [i]));
  }

  static fromLabels(labels: string[]): ClassSpace {
    return new ClassSpace(labels);
  }

  /** The 1000 ImageNet classes in the standard index order, with their WordNet ids. */
  static imagenet(): ClassSpace {
    const rows = JSON.parse(readFileSync(IMAGENET_FILE, 'utf8')) as [string, string][];
    return new ClassSpace(rows.map((r) => r[1]), rows.map((r) => r[0]));
  }

  get size(): number {
    return this.labels.length;
  }

  label(i: number): string {
    return this.labels[i];
  }

  /** One class: an index, a name or a WordNet id. */
  resolve(token: string): number {
    const t = token.trim();
    if (/^\d+$/.test(t)) {
      const i = Number(t);
      if (i >= this.size) throw new Error(`class ${i} out of range [0, ${this.size - 1}]`);
      return i;
    }
    const hits = this.byName.get(normalise(t)) ?? this.byName.get(t.toLowerCase());
    if (hits?.length === 1) return hits[0];
    if (hits && hits.length > 1) {
      const opts = hits.map((i) => (this.wnids ? `${i} (${this.wnids[i]})` : String(i))).join(', ');
      throw new Error(`class name "${t}" is ambiguous: it names classes ${opts}; give an index${this.wnids ? ' or a WordNet id' : ''}`);
    }
    throw new Error(`unknown class "${t}"${this.suggest(t)}`);
  }

  private suggest(t: string): string {
    const q = normalise(t);
    const close = this.labels.filter((l) => normalise(l).includes(q) || q.includes(normalise(l))).slice(0, 5);
    if (close.length) return `; did you mean ${close.map((c) => `"${c}"`).join(', ')}?`;
    return this.size <= 20 ? `; classes: ${this.labels.map((l, i) => `${i} ${l}`).join(', ')}` : '';
  }
}

/**
 * Parse `--classes`: comma-separated entries, each one class or a mix `a:w+b:w` (weights normalised to
 * sum 1). Returns one class vector of length space.size per entry.
 */
export function parseClassSpec(spec: string, space: ClassSpace): Float32Array[] {
  const entries = spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (entries.length === 0) throw new Error('no class given');
  return entries.map((entry) => {
    const acc = new Float64Array(space.size); // sum in float64, round once to float32 after normalising
    const parts = entry.split('+');
    let total = 0;
    for (const part of parts) {
      // `name:weight`, split at the last colon; without a weight the parts of a mix share equally
      const colon = part.lastIndexOf(':');
      const name = colon >= 0 ? part.slice(0, colon) : part;
      const wText = colon >= 0 ? part.slice(colon + 1).trim() : undefined;
      const w = wText !== undefined ? (wText === '' ? Number.NaN : Number(wText)) : 1 / parts.length;
      if (!(w > 0) || !Number.isFinite(w)) {
        throw new Error(`class weight "${wText}" in "${entry}" must be a positive number`);
      }
      acc[space.resolve(name)] += w;
      total += w;
    }
    return Float32Array.from(acc, (x) => x / total);
  });
}

/** Single class index from a name/index/WordNet id (no mixes), for commands about one class. */
export function parseOneClass(token: string, space: ClassSpace): number {
  if (token.includes('+') || token.includes(',')) throw new Error(`expected one class, got "${token}"`);
  return space.resolve(token);
}
