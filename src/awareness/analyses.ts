// What follows from awareness: the most aware channels of a class, how concentrated a class is,
// which channels (nearly) every class uses, which classes resemble each other, and each class's total.
// All functions take one layer's [classes × C] matrix.

/** Channel indices of row `cls`, most aware first (ties by index). */
export function rankChannels(values: Float32Array, C: number, cls: number): Uint32Array {
  const row = values.subarray(cls * C, (cls + 1) * C);
  const idx = new Uint32Array(C).map((_, i) => i);
  return idx.sort((a, b) => row[b] - row[a] || a - b);
}

export function topK(values: Float32Array, C: number, cls: number, k: number): { channel: number; value: number }[] {
  const row = values.subarray(cls * C, (cls + 1) * C);
  return Array.from(rankChannels(values, C, cls).subarray(0, Math.min(k, C)), (channel) => ({ channel, value: row[channel] }));
}

/** Cumulative share of the class's awareness held by its top-1, top-2, … channels. */
export function concentrationCurve(values: Float32Array, C: number, cls: number): Float32Array {
  const row = values.subarray(cls * C, (cls + 1) * C);
  const order = rankChannels(values, C, cls);
  let total = 0;
  for (let k = 0; k < C; k++) total += row[k];
  const curve = new Float32Array(C);
  let s = 0;
  for (let i = 0; i < C; i++) {
    s += row[order[i]];
    curve[i] = total > 0 ? s / total : 0;
  }
  return curve;
}

/** The smallest set of channels holding at least `share` of the class's awareness. */
export function coreChannels(values: Float32Array, C: number, cls: number, share = 0.8): Uint32Array {
  const curve = concentrationCurve(values, C, cls);
  let n = 0;
  while (n < C && curve[n] < share - 1e-7) n++;
  return rankChannels(values, C, cls).slice(0, Math.min(C, n + 1));
}

/**
 * Channels in the core (share) set of at least `fraction` of the classes: the channels the classes
 * share. Returns, per channel, the number of classes whose core holds it.
 */
export function sharedChannels(values: Float32Array, C: number, numClasses: number, share = 0.8, fraction = 0.9) {
  const count = new Uint32Array(C);
  for (let c = 0; c < numClasses; c++) for (const k of coreChannels(values, C, c, share)) count[k]++;
  // at least fraction·N classes; the slack keeps e.g. 0.07 × 100 = 7.000000000000001 from asking for 8
  const need = Math.ceil(fraction * numClasses - 1e-9);
  const shared: number[] = [];
  for (let k = 0; k < C; k++) if (count[k] >= need) shared.push(k);
  return { count, shared };
}

/** Cosine similarity of the classes' awareness vectors: [classes × classes]. */
export function cosineMatrix(values: Float32Array, C: number, numClasses: number): Float32Array {
  const norms = new Float64Array(numClasses);
  for (let a = 0; a < numClasses; a++) {
    let s = 0;
    for (let k = 0; k < C; k++) s += values[a * C + k] ** 2;
    norms[a] = Math.sqrt(s);
  }
  const m = new Float32Array(numClasses * numClasses);
  for (let a = 0; a < numClasses; a++) {
    for (let b = a; b < numClasses; b++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += values[a * C + k] * values[b * C + k];
      const v = norms[a] > 0 && norms[b] > 0 ? s / (norms[a] * norms[b]) : 0;
      m[a * numClasses + b] = m[b * numClasses + a] = v;
    }
  }
  return m;
}

/** |top-k(a) ∩ top-k(b)| / k for every pair: [classes × classes]. */
export function overlapMatrix(values: Float32Array, C: number, numClasses: number, k: number): Float32Array {
  const kk = Math.min(k, C);
  const sets = Array.from({ length: numClasses }, (_, c) => new Set(rankChannels(values, C, c).subarray(0, kk)));
  const m = new Float32Array(numClasses * numClasses);
  for (let a = 0; a < numClasses; a++) {
    for (let b = a; b < numClasses; b++) {
      let n = 0;
      for (const x of sets[a]) if (sets[b].has(x)) n++;
      m[a * numClasses + b] = m[b * numClasses + a] = n / kk;
    }
  }
  return m;
}

/** The classes nearest to `cls` by a similarity matrix, most similar first, `cls` itself left out. */
export function nearestClasses(sim: Float32Array, numClasses: number, cls: number, n = 5): { cls: number; similarity: number }[] {
  const others = Array.from({ length: numClasses }, (_, i) => i).filter((i) => i !== cls);
  others.sort((a, b) => sim[cls * numClasses + b] - sim[cls * numClasses + a] || a - b);
  return others.slice(0, n).map((c) => ({ cls: c, similarity: sim[cls * numClasses + c] }));
}

/** Σ_k raw awareness per class (application 4 compares these across classes). */
export function totals(values: Float32Array, C: number, numClasses: number): Float64Array {
  const t = new Float64Array(numClasses);
  for (let c = 0; c < numClasses; c++) {
    let s = 0;
    for (let k = 0; k < C; k++) s += values[c * C + k];
    t[c] = s;
  }
  return t;
}

/** Spearman rank correlation (average ranks for ties). */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const rx = ranks(x);
  const ry = ranks(y);
  const n = rx.length;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) {
    mx += rx[i];
    my += ry[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const a = rx[i] - mx;
    const b = ry[i] - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

function ranks(x: ArrayLike<number>): Float64Array {
  const n = x.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Float64Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && x[idx[j + 1]] === x[idx[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let q = i; q <= j; q++) r[idx[q]] = avg;
    i = j + 1;
  }
  return r;
}
