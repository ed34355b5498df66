// The awareness report: one self-contained HTML page (inline SVG plots made with Vega-Lite) plus each
// plot as its own .svg file, written atomically into a folder.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { concentrationCurve, coreChannels, sharedChannels, totals } from '../awareness/analyses.ts';
import type { Awareness, LayerAwareness } from '../awareness/compute.ts';
import { classSimilarityMatrix } from '../awareness/similarity.ts';
import { barsSpec, heatmapSpec, linesSpec, renderSvg } from './plots.ts';

export interface ReportInput {
  model: string;
  labels: string[];
  awareness: Awareness;
  /** layers to draw heatmaps and curves for (default: each GenBlock's bn_0) */
  focus?: LayerAwareness[];
  share?: number;
  maxChannels?: number;
  seconds?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Columns ordered by the class each channel serves most, then by that awareness: class blocks show up. */
function channelOrder(L: LayerAwareness, N: number, max: number): number[] {
  const C = L.channels;
  const best = new Int32Array(C);
  const bestV = new Float32Array(C);
  for (let k = 0; k < C; k++) {
    for (let c = 0; c < N; c++) {
      const v = L.relative[c * C + k];
      if (c === 0 || v > bestV[k]) {
        bestV[k] = v;
        best[k] = c;
      }
    }
  }
  let keep = Array.from({ length: C }, (_, k) => k);
  if (C > max) keep = keep.sort((a, b) => bestV[b] - bestV[a]).slice(0, max);
  return keep.sort((a, b) => best[a] - best[b] || bestV[b] - bestV[a]);
}

export async function writeReport(dir: string, input: ReportInput): Promise<string> {
  const { awareness: a, labels } = input;
  const N = a.numClasses;
  const share = input.share ?? 0.8;
  const maxChannels = input.maxChannels ?? 256;
  const focus = input.focus ?? a.layers.filter((L) => L.ccbn.j === 0);
  mkdirSync(dir, { recursive: true });
  const sections: string[] = [];
  let figure = 0;
  const plot = async (spec: Parameters<typeof renderSvg>[0], caption: string) => {
    const svg = await renderSvg(spec);
    const file = `fig${String(++figure).padStart(2, '0')}.svg`;
    writeFileAtomic(join(dir, file), svg);
    return `<figure>${svg}<figcaption>${esc(caption)} <a href="${file}">svg</a></figcaption></figure>`;
  };

  // 1. heatmaps and concentration curves per focus layer
  const layerRows: string[] = [];
  for (const L of focus) {
    const C = L.channels;
    const order = channelOrder(L, N, maxChannels);
    const values = labels.map((_, c) => order.map((k) => L.relative[c * C + k]));
    const heat = await plot(heatmapSpec(`${L.ccbn.name}: relative awareness`, labels, order.map(String), values, { colorTitle: 'share', cell: C > 64 ? 4 : 10 }),
      `Class × channel awareness in block ${L.ccbn.block} (bn_${L.ccbn.j}, ${C} channels${C > maxChannels ? `, the ${maxChannels} most aware shown` : ''}); columns grouped by the class each channel serves most.`);
    const curves = await plot(linesSpec(`${L.ccbn.name}: concentration`, labels.map((name, c) => ({ name, y: concentrationCurve(L.raw, C, c) })), { x: 'channels, most aware first', y: 'share of awareness' }, share),
      `Share of each class's awareness held by its top channels; dashed line at ${share * 100}%.`);
    const core = labels.map((_, c) => coreChannels(L.raw, C, c, share).length);
    let latent = 0;
    for (const v of L.latent) latent += v;
    layerRows.push(`<tr><td>${esc(L.ccbn.name)}</td><td>${C}</td><td>${(core.reduce((s, v) => s + v, 0) / N).toFixed(1)}</td><td>${Math.min(...core)}–${Math.max(...core)}</td><td>${latent}</td></tr>`);
    sections.push(`<section><h3>${esc(L.ccbn.name)} (block ${L.ccbn.block})</h3>${heat}${curves}</section>`);
  }

  // 2. shared-channel map: for every focus layer, how many classes hold each channel in their core set
  const sharedData: { x: number; y: number; kind: string }[] = [];
  const sharedFigs: string[] = [];
  for (const L of focus) {
    const { count } = sharedChannels(L.raw, L.channels, N, share, 0.9);
    sharedData.length = 0;
    for (let k = 0; k < L.channels; k++) sharedData.push({ x: k, y: count[k] / N, kind: L.latent[k] ? 'latent' : 'class' });
    sharedFigs.push(await plot(barsSpec(`${L.ccbn.name}: classes using each channel`, [...sharedData], { x: 'channel', y: `fraction of classes (${share * 100}% core)` }),
      'Fraction of classes whose core set holds each channel; colour = the channel\'s kind (latent-oriented channels follow z and serve all classes).'));
  }

  // 3. class similarity, 4. totals
  const sim = classSimilarityMatrix(a, 10);
  const rows = (m: Float32Array) => labels.map((_, i) => Array.from(m.subarray(i * N, (i + 1) * N)));
  const simFig = await plot(heatmapSpec('class similarity: cosine of relative awareness (all layers)', labels, labels, rows(sim.cosine), { colorTitle: 'cosine', cell: N > 30 ? 6 : 24 }), 'Cosine similarity of the classes\' awareness vectors over every CCBN layer.');
  const ovFig = await plot(heatmapSpec('class similarity: shared top-10 channels (mean over layers)', labels, labels, rows(sim.overlap), { colorTitle: 'overlap', cell: N > 30 ? 6 : 24 }), 'Fraction of top-10 channels two classes share, averaged over layers.');
  const tot = new Float64Array(N);
  for (const L of a.layers) {
    const t = totals(L.raw, L.channels, N);
    for (let c = 0; c < N; c++) tot[c] += t[c];
  }
  const totFig = await plot({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json', background: 'white', config: { font: 'DejaVu Sans' }, title: 'total awareness per class (all layers)',
    width: Math.max(200, N * 14), height: 180, data: { values: labels.map((l, c) => ({ l, v: tot[c] })) }, mark: 'bar',
    encoding: { x: { field: 'l', type: 'nominal', sort: '-y', title: null }, y: { field: 'v', type: 'quantitative', title: 'Σ awareness' } },
  } as Parameters<typeof renderSvg>[0], 'Total awareness of each class; application 4 compares it with per-class quality and diversity.');

  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Channel awareness: ${esc(input.model)}</title>
<style>body{font-family:'DejaVu Sans',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}figure{margin:1em 0;overflow-x:auto}figcaption{font-size:.85em;color:#555}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>
<h1>Channel awareness — ${esc(input.model)}</h1>
<p>${N} classes, ${a.layers.length} CCBN layers. Definition <b>${a.definition}</b>, variant <b>${a.variant}</b>${a.variant === 'expected' ? ` (${a.quadrature}-node quadrature over z)` : ''}, truncation ${a.truncation}${input.seconds !== undefined ? `, computed in ${(input.seconds * 1000).toFixed(0)} ms` : ''}. See docs/method.md for the definitions.</p>
<h2>How concentrated is each class?</h2>
<table><tr><th>layer</th><th>channels</th><th>mean channels for ${share * 100}%</th><th>range over classes</th><th>latent-oriented</th></tr>${layerRows.join('')}</table>
<h2>Layers</h2>${sections.join('\n')}
<h2>Shared channels</h2>${sharedFigs.join('\n')}
<h2>Class similarity</h2>${simFig}${ovFig}
<h2>Total awareness</h2>${totFig}
</body></html>\n`;
  const path = join(dir, 'index.html');
  writeFileAtomic(path, html);
  return path;
}
