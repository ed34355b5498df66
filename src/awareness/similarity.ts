// Class-to-class similarity over several layers: the cosine of the classes' relative awareness vectors
// (all layers concatenated, so each layer weighs the same) and the mean overlap of their top-k channels.
import { rankChannels } from './analyses.ts';
import type { Awareness } from './compute.ts';

/** Similarity of class `cls` to every class (one row; cheap even for 1000 classes). */
export function classSimilarityRow(a: Awareness, cls: number, k: number) {
  const N = a.numClasses;
  const dot = new Float64Array(N);
  const norm = new Float64Array(N);
  const overlap = new Float64Array(N);
  for (const L of a.layers) {
    const C = L.channels;
    const v = L.relative;
    const kk = Math.min(k, C);
    const mine = new Set(rankChannels(v, C, cls).subarray(0, kk));
    for (let c = 0; c < N; c++) {
      let d = 0, n = 0;
      for (let j = 0; j < C; j++) {
        d += v[cls * C + j] * v[c * C + j];
        n += v[c * C + j] * v[c * C + j];
      }
      dot[c] += d;
      norm[c] += n;
      let hits = 0;
      for (const x of rankChannels(v, C, c).subarray(0, kk)) if (mine.has(x)) hits++;
      overlap[c] += hits / kk / a.layers.length;
    }
  }
  const cosine = new Float64Array(N);
  for (let c = 0; c < N; c++) cosine[c] = norm[c] > 0 && norm[cls] > 0 ? dot[c] / Math.sqrt(norm[c] * norm[cls]) : 0;
  return { cosine, overlap };
}

/** Full matrices (for reports on a modest number of classes). */
export function classSimilarityMatrix(a: Awareness, k: number) {
  const N = a.numClasses;
  const cosine = new Float32Array(N * N);
  const overlap = new Float32Array(N * N);
  for (let c = 0; c < N; c++) {
    const r = classSimilarityRow(a, c, k);
    for (let d = 0; d < N; d++) {
      cosine[c * N + d] = r.cosine[d];
      overlap[c * N + d] = r.overlap[d];
    }
  }
  return { cosine, overlap };
}
