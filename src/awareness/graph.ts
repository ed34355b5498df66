// The expectation behind channel awareness, as ONNX graphs (onnxruntime is our BLAS):
//   μ_γ = 1 + E·Sᵉ, μ_β = E·Oᵉ           for N class embeddings E at once (a GEMM)
//   E[h] = Σ_i w_i f(γ_i),  γ_i = μ_γ + σ_γ x_i,  β|γ_i ~ N(μ_β + ρσ_γ x_i, σ²_{β|γ})
//   with h = ReLU(γ x̂ + β), x̂ ~ N(0, 1): u | γ ~ N(m, s²), m = μ_β + ρσ_γ x_i, s² = γ_i² + σ²_{β|γ},
//   f = m Φ(m/s) + s φ(m/s)   and the second moment (m² + s²) Φ(m/s) + m s φ(m/s) = m·f + s² Φ(m/s).
// (x_i, w_i) is a Gauss–Hermite rule over the z-driven part of γ; one node at 0 with σ = 0 is the z = 0 variant.
// The weights w_i are folded into Φ and φ (w Φ = w/2 + (w/2)·erf), so they cost no extra operation.
// The graph takes one CCBN layer's weights as inputs (one session serves every layer and model) and ends
// with what compute.ts hands out, written straight into rows of that layer's [classes × C] arrays: E[h]
// (ReLU'd against rounding), √E[h²], the raw score (one of those two, times a per-channel factor for the
// downstream definition) and the raw score normalised over the layer's channels.
// The class-driven variance of γ and β per channel, diag(Sᵉᵀ Σ_e Sᵉ), is a separate graph, run once per model.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../model/onnx.ts';
import type { ModulationTable } from './modulation.ts';

export const SQRT1_2PI = 1 / Math.sqrt(2 * Math.PI);
/** added to s² so that s > 0 even for γ = 0 and no z-spread (as the TypeScript kernel does) */
export const S2_FLOOR = 1e-12;

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  // No spinning: the graphs are chains of short elementwise ops, and on a busy machine spinning workers
  // only steal time from the thread that has work.
  return { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } };
}

/**
 * One CCBN layer (any layer: its weights are inputs), R classes at a time.
 * Inputs: emb [R, z_dim]; gamma_e, beta_e [z_dim, C] (the class parts Sᵉ, Oᵉ of the layer, transposed);
 * sigma_g, slope, resid [1, C] (the z-spread at a truncation; resid includes S2_FLOOR); scale [1, C] when
 * `scaled` (the raw score is base × scale). `base` picks E[h] or √E[h²] as the raw score's base.
 * Outputs: activation, rms, raw, relative [R, C].
 */
export function expectationSession(nodes: Float64Array, weights: Float64Array,
  opts: { threads?: number; base: 'activation' | 'rms'; scaled: boolean }): Promise<ort.InferenceSession> {
  const g = new GraphBuilder();
  const emb = g.input('emb', ['R', 'Z']);
  const GE = g.input('gamma_e', ['Z', 'C']);
  const BE = g.input('beta_e', ['Z', 'C']);
  const sigmaG = g.input('sigma_g', [1, 'C']);
  const slope = g.input('slope', [1, 'C']);
  const resid = g.input('resid', [1, 'C']);
  const k = (name: string, v: number) => g.weight(name, [1], new Float32Array([v]));
  const one = k('one', 1);
  const sqrt2 = k('sqrt2', Math.SQRT2);

  const mg = g.op('Add', [g.op('MatMul', [emb, GE]), one]);
  const mb = g.op('MatMul', [emb, BE]);
  let mean = '';
  let second = '';
  for (let i = 0; i < nodes.length; i++) {
    const xi = nodes[i] === 0 ? '' : k(`x${i}`, nodes[i]);
    const halfW = k(`hw${i}`, weights[i] / 2);
    const pdfW = k(`pw${i}`, weights[i] * SQRT1_2PI);
    const gam = nodes[i] === 0 ? mg : g.op('Add', [mg, g.op('Mul', [sigmaG, xi])]);
    const m = nodes[i] === 0 ? mb : g.op('Add', [mb, g.op('Mul', [slope, xi])]);
    const s2 = g.op('Add', [g.op('Mul', [gam, gam]), resid]);
    const s = g.op('Sqrt', [s2]);
    const v = g.op('Div', [m, g.op('Mul', [s, sqrt2])]); // r/√2, r = m/s
    const e = g.op('Exp', [g.op('Neg', [g.op('Mul', [v, v])])]); // exp(−r²/2)
    const cdfW = g.op('Add', [halfW, g.op('Mul', [g.op('Erf', [v]), halfW])]); // w·Φ(r)
    const spW = g.op('Mul', [g.op('Mul', [s, pdfW]), e]); // w·s·φ(r)
    const fm = g.op('Add', [g.op('Mul', [m, cdfW]), spW]); // w·E[h | node]
    const f2 = g.op('Add', [g.op('Mul', [m, fm]), g.op('Mul', [s2, cdfW])]); // w·E[h² | node]
    mean = mean ? g.op('Add', [mean, fm]) : fm;
    second = second ? g.op('Add', [second, f2]) : f2;
  }
  g.op('Relu', [mean], {}, 'activation');
  g.op('Sqrt', [g.op('Relu', [second])], {}, 'rms');
  const base = opts.base === 'activation' ? 'activation' : 'rms';
  // an output name exists once: when the raw score is E[h] or √E[h²] itself, it is a copy
  if (opts.scaled) g.op('Mul', [base, g.input('scale', [1, 'C'])], {}, 'raw');
  else g.op('Identity', [base], {}, 'raw');
  const sum = g.op('Add', [g.op('ReduceSum', ['raw', g.ints('axes1', [1])], { keepdims: 1 }), k('tiny', 1e-30)]);
  g.op('Div', ['raw', sum], {}, 'relative');
  for (const q of ['activation', 'rms', 'raw', 'relative']) g.output(q, ['R', 'C']);
  return ort.InferenceSession.create(g.encode(17), sessionOptions(opts.threads ?? 0));
}

/** The class parts E·Sᵉ (= μ_γ − 1) and E·Oᵉ (= μ_β) for N class embeddings: outputs mu_gamma_e, mu_beta [N, W]. */
export function modulationMeanSession(t: ModulationTable, threads = 0): Promise<ort.InferenceSession> {
  const g = new GraphBuilder();
  const emb = g.input('emb', ['N', t.zDim]);
  g.op('MatMul', [emb, g.weight('gamma_e', [t.zDim, t.width], t.gammaE)], {}, 'mu_gamma_e');
  g.op('MatMul', [emb, g.weight('beta_e', [t.zDim, t.width], t.betaE)], {}, 'mu_beta');
  g.output('mu_gamma_e', ['N', t.width]);
  g.output('mu_beta', ['N', t.width]);
  return ort.InferenceSession.create(g.encode(17), sessionOptions(threads));
}

/** diag(Sᵉᵀ Σ_e Sᵉ) and diag(Oᵉᵀ Σ_e Oᵉ) [W], for the embedding covariance Σ_e [z_dim, z_dim]. */
export async function classVariance(t: ModulationTable, ecov: Float64Array, threads = 0): Promise<{ gamma: Float32Array; beta: Float32Array }> {
  const g = new GraphBuilder();
  const zd = t.zDim;
  const cov = g.weight('ecov', [zd, zd], Float32Array.from(ecov));
  const axes = g.ints('axes0', [0]);
  const q = (S: string, out: string) => {
    g.op('ReduceSum', [g.op('Mul', [g.op('MatMul', [cov, S]), S]), axes], { keepdims: 0 }, out);
    g.output(out, [t.width]);
  };
  q(g.weight('gamma_e', [zd, t.width], t.gammaE), 'class_var_gamma');
  q(g.weight('beta_e', [zd, t.width], t.betaE), 'class_var_beta');
  const s = await ort.InferenceSession.create(g.encode(17), sessionOptions(threads));
  try {
    const out = await s.run({});
    return { gamma: out.class_var_gamma.data as Float32Array, beta: out.class_var_beta.data as Float32Array };
  } finally {
    await s.release();
  }
}
