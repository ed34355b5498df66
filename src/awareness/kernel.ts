// The expectation behind channel awareness in plain TypeScript, for small requests (a few classes), where
// an onnxruntime call would cost more than the arithmetic. Same quantities as graph.ts:
//   E[ReLU(u)] and E[ReLU(u)²] for u ~ N(m, s²) are s·M(m/s) and s²·S(m/s), with
//   M(r) = rΦ(r) + φ(r),   S(r) = (r² + 1)Φ(r) + rφ(r),   M' = Φ,   S' = 2M,
// summed over the Gauss–Hermite nodes of the z-driven part of γ (one node at 0 for the z = 0 variant).
// M and S are tabulated once on r ∈ [−8, 8] as cubic Hermite pieces (value and exact derivative at both
// ends, step 1/32; interpolation error ≤ h⁴/384·max|f⁗| < 1.3e-9, far below float32). Outside the table:
// M = S = 0 below −8 (they are < 1e-15 there), M = r + M(−r) ≈ r and S ≈ r² + 1 above 8.
// Φ on the grid comes from integrating φ with 5-point Gauss–Legendre per step from −40 (exact to ~1e-16
// relative, also in the lower tail where M and S are small differences).

const R = 8;
const STEPS_PER_UNIT = 32;
const H = 1 / STEPS_PER_UNIT;
const N_INT = 2 * R * STEPS_PER_UNIT;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Interleaved cubic coefficients per interval: M: a b c d, S: a b c d (p(u) = a + u(b + u(c + u d)), u ∈ [0, 1]). */
const COEF = buildTable();

function buildTable(): Float64Array {
  const gl = [[-0.9061798459386640, 0.2369268850561891], [-0.5384693101056831, 0.4786286704993665], [0, 0.5688888888888889],
    [0.5384693101056831, 0.4786286704993665], [0.9061798459386640, 0.2369268850561891]];
  const pdf = (x: number) => INV_SQRT_2PI * Math.exp(-0.5 * x * x);
  const integrate = (a: number, b: number) => {
    const c = (a + b) / 2, h = (b - a) / 2;
    let s = 0;
    for (const [x, w] of gl) s += w * pdf(c + h * x);
    return s * h;
  };
  // Φ at the grid points r ≤ 0, from far in the tail (Φ(−40) < 1e-300)
  let cdf = 0;
  for (let x = -40; x < -R - 1e-12; x += H) cdf += integrate(x, x + H);
  const half = R * STEPS_PER_UNIT;
  const phiLow = new Float64Array(half + 1); // Φ(−R + i·H), i = 0..half (r from −R to 0)
  phiLow[0] = cdf;
  for (let i = 1; i <= half; i++) phiLow[i] = phiLow[i - 1] + integrate(-R + (i - 1) * H, -R + i * H);
  // values and derivatives on the whole grid; the upper half by symmetry
  const M = new Float64Array(N_INT + 1), Md = new Float64Array(N_INT + 1), S = new Float64Array(N_INT + 1), Sd = new Float64Array(N_INT + 1);
  for (let i = 0; i <= N_INT; i++) {
    const r = -R + i * H;
    const j = i <= half ? i : N_INT - i; // index of −|r|
    const x = -Math.abs(r);
    const Phi = phiLow[j]; // Φ(−|r|)
    const ph = pdf(x);
    const mLow = x * Phi + ph; // M(−|r|) = φ − |r|Φ(−|r|)
    const sLow = (x * x + 1) * Phi + x * ph; // S(−|r|)
    if (r <= 0) {
      M[i] = mLow; Md[i] = Phi; S[i] = sLow; Sd[i] = 2 * mLow;
    } else {
      M[i] = r + mLow; Md[i] = 1 - Phi; S[i] = r * r + 1 - sLow; Sd[i] = 2 * (r + mLow);
    }
  }
  const coef = new Float64Array(8 * N_INT);
  const cubic = (f: Float64Array, d: Float64Array, i: number, o: number) => {
    const f0 = f[i], f1 = f[i + 1], d0 = d[i] * H, d1 = d[i + 1] * H;
    coef[o] = f0;
    coef[o + 1] = d0;
    coef[o + 2] = 3 * (f1 - f0) - 2 * d0 - d1;
    coef[o + 3] = 2 * (f0 - f1) + d0 + d1;
  };
  for (let i = 0; i < N_INT; i++) {
    cubic(M, Md, i, 8 * i);
    cubic(S, Sd, i, 8 * i + 4);
  }
  return coef;
}

/** M(r) and S(r) as tabulated (exported for tests). */
export function reluMoments(r: number): { M: number; S: number } {
  const out = new Float64Array(2);
  evalMS(r, out);
  return { M: out[0], S: out[1] };
}

function evalMS(r: number, out: Float64Array): void {
  const q = (r + R) * STEPS_PER_UNIT;
  if (!(q > 0)) {
    out[0] = 0;
    out[1] = 0;
    return;
  }
  if (q >= N_INT) {
    out[0] = r;
    out[1] = r * r + 1;
    return;
  }
  const i = q | 0;
  const u = q - i;
  const o = 8 * i;
  out[0] = COEF[o] + u * (COEF[o + 1] + u * (COEF[o + 2] + u * COEF[o + 3]));
  out[1] = COEF[o + 4] + u * (COEF[o + 5] + u * (COEF[o + 6] + u * COEF[o + 7]));
}

/**
 * E[h] and E[h²] for C channels of one class: channel k has mean modulation μ_γ = gShift + mg[mOff + k],
 * μ_β = mb[mOff + k] and z-spread sigmaG, slope, resid at [col + k] (resid includes the s² floor).
 * Writes mean[k], second[k] (k < C). The rule (x_i, w_i) is a Gauss–Hermite rule; [0], [1] for z = 0.
 */
export function channelMoments(
  mg: Float32Array, mb: Float32Array, mOff: number, gShift: number,
  sigmaG: Float32Array, slope: Float32Array, resid: Float32Array, col: number, C: number,
  nodes: Float64Array, weights: Float64Array, mean: Float64Array, second: Float64Array,
): void {
  mean.fill(0, 0, C);
  second.fill(0, 0, C);
  const K = nodes.length;
  for (let i = 0; i < K; i++) {
    const j = K - 1 - i;
    if (nodes[i] === 0) accumulate0(mg, mb, mOff, gShift, resid, col, C, weights[i], mean, second);
    else if (j > i && nodes[j] === -nodes[i] && weights[j] === weights[i]) {
      // a symmetric pair ±x (Gauss–Hermite rules are symmetric): one pass for both
      accumulatePair(mg, mb, mOff, gShift, sigmaG, slope, resid, col, C, nodes[i], weights[i], mean, second);
    } else if (j < i && nodes[j] === -nodes[i] && weights[j] === weights[i]) continue; // done with its partner
    else accumulate(mg, mb, mOff, gShift, sigmaG, slope, resid, col, C, nodes[i], weights[i], mean, second);
  }
}

/** Nodes +x and −x, both with weight w. */
function accumulatePair(mg: Float32Array, mb: Float32Array, mOff: number, gShift: number, sigmaG: Float32Array, slope: Float32Array,
  resid: Float32Array, col: number, C: number, x: number, w: number, mean: Float64Array, second: Float64Array): void {
  const coef = COEF;
  for (let k = 0; k < C; k++) {
    const g0 = gShift + mg[mOff + k], b0 = mb[mOff + k], dg = sigmaG[col + k] * x, db = slope[col + k] * x, rs = resid[col + k];
    let a = 0, b = 0;
    // −x
    const gam1 = g0 - dg, m1 = b0 - db;
    const s21 = gam1 * gam1 + rs;
    const s1 = Math.sqrt(s21);
    const q1 = (m1 / s1 + R) * STEPS_PER_UNIT;
    // +x
    const gam2 = g0 + dg, m2 = b0 + db;
    const s22 = gam2 * gam2 + rs;
    const s2 = Math.sqrt(s22);
    const q2 = (m2 / s2 + R) * STEPS_PER_UNIT;
    if (q1 >= N_INT) {
      a += m1;
      b += m1 * m1 + s21;
    } else if (q1 > 0) {
      const j = q1 | 0, u = q1 - j, o = 8 * j;
      a += s1 * (coef[o] + u * (coef[o + 1] + u * (coef[o + 2] + u * coef[o + 3])));
      b += s21 * (coef[o + 4] + u * (coef[o + 5] + u * (coef[o + 6] + u * coef[o + 7])));
    }
    if (q2 >= N_INT) {
      a += m2;
      b += m2 * m2 + s22;
    } else if (q2 > 0) {
      const j = q2 | 0, u = q2 - j, o = 8 * j;
      a += s2 * (coef[o] + u * (coef[o + 1] + u * (coef[o + 2] + u * coef[o + 3])));
      b += s22 * (coef[o + 4] + u * (coef[o + 5] + u * (coef[o + 6] + u * coef[o + 7])));
    }
    mean[k] += w * a;
    second[k] += w * b;
  }
}

/** One quadrature node x ≠ 0 with weight w, added to mean and second. */
function accumulate(mg: Float32Array, mb: Float32Array, mOff: number, gShift: number, sigmaG: Float32Array, slope: Float32Array, resid: Float32Array,
  col: number, C: number, x: number, w: number, mean: Float64Array, second: Float64Array): void {
  const coef = COEF;
  for (let k = 0; k < C; k++) {
    const gam = gShift + mg[mOff + k] + sigmaG[col + k] * x;
    const m = mb[mOff + k] + slope[col + k] * x;
    const s2 = gam * gam + resid[col + k];
    const s = Math.sqrt(s2);
    const r = m / s;
    const q = (r + R) * STEPS_PER_UNIT;
    if (q >= N_INT) {
      mean[k] += w * m; // s·r
      second[k] += w * (m * m + s2); // s²(r² + 1)
    } else if (q > 0) {
      const j = q | 0;
      const u = q - j;
      const o = 8 * j;
      mean[k] += w * s * (coef[o] + u * (coef[o + 1] + u * (coef[o + 2] + u * coef[o + 3])));
      second[k] += w * s2 * (coef[o + 4] + u * (coef[o + 5] + u * (coef[o + 6] + u * coef[o + 7])));
    } // else r < −8 (or NaN): nothing passes the ReLU
  }
}

/** The node at x = 0 (the only one for z = 0): γ = μ_γ, m = μ_β. */
function accumulate0(mg: Float32Array, mb: Float32Array, mOff: number, gShift: number, resid: Float32Array,
  col: number, C: number, w: number, mean: Float64Array, second: Float64Array): void {
  const coef = COEF;
  for (let k = 0; k < C; k++) {
    const gam = gShift + mg[mOff + k];
    const m = mb[mOff + k];
    const s2 = gam * gam + resid[col + k];
    const s = Math.sqrt(s2);
    const r = m / s;
    const q = (r + R) * STEPS_PER_UNIT;
    if (q >= N_INT) {
      mean[k] += w * m;
      second[k] += w * (m * m + s2);
    } else if (q > 0) {
      const j = q | 0;
      const u = q - j;
      const o = 8 * j;
      mean[k] += w * s * (coef[o] + u * (coef[o + 1] + u * (coef[o + 2] + u * coef[o + 3])));
      second[k] += w * s2 * (coef[o + 4] + u * (coef[o + 5] + u * (coef[o + 6] + u * coef[o + 7])));
    }
  }
}
