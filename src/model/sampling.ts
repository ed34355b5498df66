// Latent sampling as BigGAN does it: z = truncation · truncnorm(−2, 2), from a seeded generator whose
// stream is defined here (mulberry32 + Box–Muller in float64), so a seed gives the same z on
// every machine and every run. Not numpy's stream: seeds are ours, documented in docs/method.md.

/** Uniform (0, 1) doubles: mulberry32 (32-bit state, exact integer arithmetic in JS), two draws per double. */
export function uniformSource(seed: number): () => number {
  let s = seed >>> 0;
  const next32 = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  // 53 random bits, shifted off zero so that log() below stays finite
  return () => ((next32() >>> 5) * 2 ** 26 + (next32() >>> 6) + 0.5) / 2 ** 53;
}

/** Standard normals truncated to [−bound, bound] by rejection (what scipy's truncnorm draws in law). */
export function truncatedNormalSource(seed: number, bound = 2): () => number {
  const u = uniformSource(seed);
  let spare: number | undefined;
  const normal = () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(u()));
    const th = 2 * Math.PI * u();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
  return () => {
    for (;;) {
      const x = normal();
      if (x >= -bound && x <= bound) return x;
    }
  };
}

/** [n, zDim] latents: truncation · truncnorm(−2, 2), seeded. */
export function sampleZ(n: number, zDim: number, truncation: number, seed: number): Float32Array {
  if (!(truncation > 0 && truncation <= 1)) throw new Error(`truncation must be in (0, 1], got ${truncation}`);
  const draw = truncatedNormalSource(seed);
  const z = new Float32Array(n * zDim);
  for (let i = 0; i < z.length; i++) z[i] = truncation * draw();
  return z;
}

/** [indices.length, numClasses] one-hot rows. */
export function oneHot(indices: ArrayLike<number>, numClasses: number): Float32Array {
  const y = new Float32Array(indices.length * numClasses);
  for (let i = 0; i < indices.length; i++) {
    const c = indices[i];
    if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new Error(`class ${c} out of range [0, ${numClasses - 1}]`);
    y[i * numClasses + c] = 1;
  }
  return y;
}
