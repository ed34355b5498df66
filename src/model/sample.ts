// Many samples through the engine, batch by batch.
import type { ChannelEdit, Generator } from './generator.ts';

export interface GenerateRequest {
  /** [n, z_dim] (already scaled by the truncation, as BigGAN samples it) */
  z: Float32Array;
  /** [n, num_classes] one-hot or soft class vectors */
  y: Float32Array;
  n: number;
  truncation: number;
  batchSize?: number;
  edits?: Map<number, ChannelEdit>;
  onBatch?: (done: number, total: number) => void;
}

/** All n images, [n, 3, R, R] in [-1, 1]. */
export async function generate(g: Generator, req: GenerateRequest): Promise<Float32Array> {
  const { z_dim: zd, num_classes: nc } = g.config;
  const R = g.arch.resolution;
  const per = 3 * R * R;
  const out = new Float32Array(req.n * per);
  const bs = Math.max(1, req.batchSize ?? 8);
  for (let s = 0; s < req.n; s += bs) {
    const e = Math.min(req.n, s + bs);
    const c = g.conditioning(req.z.subarray(s * zd, e * zd), req.y.subarray(s * nc, e * nc), e - s);
    const { images } = await g.forward(c, { truncation: req.truncation, edits: req.edits });
    out.set(images, s * per);
    req.onBatch?.(e, req.n);
  }
  return out;
}
