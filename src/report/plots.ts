// Plots for the report, specified in Vega-Lite and rendered headless to SVG by Vega.
import * as vega from 'vega';
import * as vl from 'vega-lite';

type Spec = vl.TopLevelSpec;

export async function renderSvg(spec: Spec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

const base = { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', background: 'white', config: { font: 'DejaVu Sans', view: { stroke: null } } } as const;

/** rows × columns heatmap; `values[r][c]`. Column labels are channel indices or class names. */
export function heatmapSpec(title: string, rows: string[], cols: string[], values: ArrayLike<number>[], opts: { colorTitle: string; cell?: number; rowCell?: number; scheme?: string }): Spec {
  const data: { r: string; c: string; v: number }[] = [];
  rows.forEach((r, i) => cols.forEach((c, j) => data.push({ r, c, v: values[i][j] })));
  const cell = opts.cell ?? 12;
  return {
    ...base,
    title,
    data: { values: data },
    width: Math.max(120, cols.length * cell),
    height: Math.max(60, rows.length * (opts.rowCell ?? Math.max(cell, 12))),
    mark: 'rect',
    encoding: {
      x: { field: 'c', type: 'ordinal', sort: cols, title: null, axis: cols.length > 64 ? { labels: false, ticks: false } : { labelFontSize: 8, labelAngle: -90 } },
      y: { field: 'r', type: 'ordinal', sort: rows, title: null, axis: { labelFontSize: 9 } },
      color: { field: 'v', type: 'quantitative', title: opts.colorTitle, scale: { scheme: opts.scheme ?? 'viridis' } },
      tooltip: [{ field: 'r' }, { field: 'c' }, { field: 'v', format: '.4f' }],
    },
  } as Spec;
}

/** One line per series: y against x = 1..n. */
export function linesSpec(title: string, series: { name: string; y: ArrayLike<number> }[], axes: { x: string; y: string }, rule?: number): Spec {
  const data: { s: string; x: number; y: number }[] = [];
  for (const s of series) for (let i = 0; i < s.y.length; i++) data.push({ s: s.name, x: i + 1, y: s.y[i] });
  const layer: unknown[] = [{
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: axes.x },
      y: { field: 'y', type: 'quantitative', title: axes.y, scale: { domain: [0, 1] } },
      color: { field: 's', type: 'nominal', title: null, scale: { scheme: 'tableau10' } },
    },
  }];
  if (rule !== undefined) layer.push({ data: { values: [{ y: rule }] }, mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' }, encoding: { y: { field: 'y', type: 'quantitative' } } });
  return { ...base, title, width: 420, height: 260, data: { values: data }, layer } as Spec;
}

/** Bars per channel, coloured by a category (e.g. the channel's kind). */
export function barsSpec(title: string, bars: { x: number; y: number; kind: string }[], axes: { x: string; y: string }): Spec {
  return {
    ...base,
    title,
    width: Math.min(900, Math.max(300, bars.length * 2)),
    height: 160,
    data: { values: bars },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'x', type: 'ordinal', title: axes.x, axis: { labels: bars.length <= 64, ticks: false } },
      y: { field: 'y', type: 'quantitative', title: axes.y },
      color: { field: 'kind', type: 'nominal', title: 'kind', scale: { domain: ['class', 'latent'], range: ['#4c78a8', '#f58518'] } },
      tooltip: [{ field: 'x', title: 'channel' }, { field: 'y', format: '.3f' }, { field: 'kind' }],
    },
  } as Spec;
}
