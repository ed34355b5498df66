// The expectation behind channel awareness, as one small ONNX graph (onnxruntime is our BLAS):
//   μ_γ = 1 + E·Sᵉ, μ_β = E·Oᵉ           for N class embeddings E at once (a GEMM)
//   E[h] = Σ_i w_i f(γ_i),  γ_i = μ_γ + σ_γ x_i,  β|γ_i ~ N(μ_β + ρσ_γ x_i, σ²_{β|γ})
//   with h = ReLU(γ x̂ + β), x̂ ~ N(0, 1): u | γ ~ N(m, s²), m = μ_β + ρσ_γ x_i, s² = γ_i² + σ²_{β|γ},
//   f = m Φ(m/s) + s φ(m/s)   and the second moment (m² + s²) Φ(m/s) + m s φ(m/s).
// (x_i, w_i) is a Gauss–Hermite rule over the z-driven part of γ; one node at 0 with σ = 0 is the z = 0 variant.
// Also: the class-driven variance of γ and β per channel, diag(Sᵉᵀ Σ_e Sᵉ), from the embedding covariance.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../model/onnx.ts';
import type { ModulationTable } from './modulation.ts';

export async function expectationSession(t: ModulationTable, nodes: Float64Array, weights: Float64Array, threads = 0) {
  const g = new GraphBuilder();
  const W = t.width;
  const zd = t.zDim;
  const emb = g.input('emb', ['N', zd]);
  const sigmaG = g.input('sigma_g', [1, W]);
  const slope = g.input('slope', [1, W]);
  const resid = g.input('resid', [1, W]);
  const ecov = g.input('ecov', [zd, zd]);
  const GE = g.weight('gamma_e', [zd, W], t.gammaE);
  const BE = g.weight('beta_e', [zd, W], t.betaE);
  const k = (name: string, v: number) => g.weight(name, [1], new Float32Array([v]));
  const one = k('one', 1);
  const half = k('half', 0.5);
  const invSqrt2 = k('inv_sqrt2', Math.SQRT1_2);
  const invSqrt2pi = k('inv_sqrt2pi', 1 / Math.sqrt(2 * Math.PI));
  const minusHalf = k('minus_half', -0.5);
  const tiny = k('tiny', 1e-12);

  const mg = g.op('Add', [g.op('MatMul', [emb, GE]), one]);
  const mb = g.op('MatMul', [emb, BE]);
  let mean = '';
  let second = '';
  for (let i = 0; i < nodes.length; i++) {
    const xi = nodes[i] === 0 ? '' : k(`x${i}`, nodes[i]);
    const wi = k(`w${i}`, weights[i]);
    const gam = nodes[i] === 0 ? mg : g.op('Add', [mg, g.op('Mul', [sigmaG, xi])]);
    const m = nodes[i] === 0 ? mb : g.op('Add', [mb, g.op('Mul', [slope, xi])]);
    const s = g.op('Sqrt', [g.op('Add', [g.op('Add', [g.op('Mul', [gam, gam]), resid]), tiny])]);
    const r = g.op('Div', [m, s]);
    const cdf = g.op('Add', [half, g.op('Mul', [half, g.op('Erf', [g.op('Mul', [r, invSqrt2])])])]);
    const pdf = g.op('Mul', [invSqrt2pi, g.op('Exp', [g.op('Mul', [minusHalf, g.op('Mul', [r, r])])])]);
    const sp = g.op('Mul', [s, pdf]);
    const fm = g.op('Add', [g.op('Mul', [m, cdf]), sp]);
    const f2 = g.op('Add', [g.op('Mul', [g.op('Add', [g.op('Mul', [m, m]), g.op('Mul', [s, s])]), cdf]), g.op('Mul', [m, sp])]);
    const wm = g.op('Mul', [fm, wi]);
    const w2 = g.op('Mul', [f2, wi]);
    mean = mean ? g.op('Add', [mean, wm]) : wm;
    second = second ? g.op('Add', [second, w2]) : w2;
  }
  g.op('Identity', [mean], {}, 'mean');
  g.op('Identity', [second], {}, 'second');
  g.output('mean', ['N', W]);
  g.output('second', ['N', W]);
  // class-driven variance: Σ_d (Σ_e Sᵉ)[d, k] · Sᵉ[d, k]
  const axes = g.ints('axes0', [0]);
  const q = (S: string) => g.op('ReduceSum', [g.op('Mul', [g.op('MatMul', [ecov, S]), S]), axes], { keepdims: 1 });
  g.op('Identity', [q(GE)], {}, 'class_var_gamma');
  g.op('Identity', [q(BE)], {}, 'class_var_beta');
  g.output('class_var_gamma', [1, W]);
  g.output('class_var_beta', [1, W]);
  return ort.InferenceSession.create(g.encode(17), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
}
