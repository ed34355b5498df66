// Gaussian facts the awareness formulas rest on, in float64.

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** erf(x), |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit; one exp). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

export const normCdf = (x: number) => 0.5 * (1 + erf(x * SQRT1_2));
export const normPdf = (x: number) => INV_SQRT_2PI * Math.exp(-0.5 * x * x);

/** E[ReLU(u)] for u ~ N(m, s²): m Φ(m/s) + s φ(m/s); ReLU(m) when s = 0. */
export function reluMean(m: number, s: number): number {
  if (!(s > 0)) return m > 0 ? m : 0;
  const r = m / s;
  return m * normCdf(r) + s * normPdf(r);
}

/** E[ReLU(u)²] for u ~ N(m, s²): (m² + s²) Φ(m/s) + m s φ(m/s). */
export function reluSecondMoment(m: number, s: number): number {
  if (!(s > 0)) return m > 0 ? m * m : 0;
  const r = m / s;
  return (m * m + s * s) * normCdf(r) + m * s * normPdf(r);
}

/** Variance of a standard normal truncated to [−b, b]: 1 − 2bφ(b) / (2Φ(b) − 1). */
export function truncatedNormalVariance(b = 2): number {
  return 1 - (2 * b * normPdf(b)) / (2 * normCdf(b) - 1);
}

/**
 * Gauss–Hermite rule for E[f(X)], X ~ N(0, 1): nodes x_i and weights w_i (Σ w_i = 1), so that
 * E[f(X)] ≈ Σ w_i f(x_i), exact for polynomials of degree < 2K. Nodes by Newton on the
 * orthonormal Hermite recurrence (physicists' form), then rescaled by √2.
 */
export function gaussHermite(K: number): { nodes: Float64Array; weights: Float64Array } {
  const nodes = new Float64Array(K);
  const weights = new Float64Array(K);
  const m = Math.floor((K + 1) / 2);
  let z = 0;
  for (let i = 0; i < m; i++) {
    // standard initial guesses (Numerical Recipes, gauher)
    if (i === 0) z = Math.sqrt(2 * K + 1) - 1.85575 * Math.pow(2 * K + 1, -0.16667);
    else if (i === 1) z -= (1.14 * Math.pow(K, 0.426)) / z;
    else if (i === 2) z = 1.86 * z - 0.86 * nodes[0];
    else if (i === 3) z = 1.91 * z - 0.91 * nodes[1];
    else z = 2 * z - nodes[i - 2];
    let pp = 0;
    for (let it = 0; it < 100; it++) {
      let p1 = Math.pow(Math.PI, -0.25);
      let p2 = 0;
      for (let j = 0; j < K; j++) {
        const p3 = p2;
        p2 = p1;
        p1 = z * Math.sqrt(2 / (j + 1)) * p2 - Math.sqrt(j / (j + 1)) * p3;
      }
      pp = Math.sqrt(2 * K) * p2;
      const z1 = z;
      z = z1 - p1 / pp;
      if (Math.abs(z - z1) < 1e-14) break;
    }
    nodes[i] = z;
    nodes[K - 1 - i] = -z;
    weights[i] = weights[K - 1 - i] = 2 / (pp * pp);
  }
  // physicists' rule ∫e^{-x²} f → probabilists': x·√2, w/√π
  for (let i = 0; i < K; i++) {
    nodes[i] *= Math.SQRT2;
    weights[i] /= Math.sqrt(Math.PI);
  }
  return { nodes, weights };
}
