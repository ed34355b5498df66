// Generator output → pictures. Images arrive as float32 [N, 3, R, R] in [-1, 1]; pixels are
// clip((x + 1) / 2 · 256, 0, 255) truncated to uint8, exactly as the reference port's convert_to_images.
import sharp from 'sharp';
import { renameSync, unlinkSync } from 'node:fs';
import { dirname, extname, basename, join } from 'node:path';

export function toRgb8(images: Float32Array, index: number, res: number): Uint8Array {
  const plane = res * res;
  const out = new Uint8Array(plane * 3);
  const base = index * 3 * plane;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = ((images[base + c * plane + p] + 1) / 2) * 256;
      out[p * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : Math.trunc(v);
    }
  }
  return out;
}

export interface GridOptions {
  /** tiles per row (default: ceil(sqrt(N))) */
  columns?: number;
  /** integer nearest-neighbour upscaling of each tile */
  scale?: number;
  /** gap between tiles in pixels */
  gap?: number;
}

/** Nearest-neighbour upscaling keeps the generator's pixels visible instead of blurring them. */
function upscale(rgb: Uint8Array, res: number, s: number): Uint8Array {
  if (s === 1) return rgb;
  const r2 = res * s;
  const out = new Uint8Array(r2 * r2 * 3);
  for (let y = 0; y < r2; y++) {
    for (let x = 0; x < r2; x++) {
      const src = ((Math.floor(y / s) * res) + Math.floor(x / s)) * 3;
      const dst = (y * r2 + x) * 3;
      out[dst] = rgb[src];
      out[dst + 1] = rgb[src + 1];
      out[dst + 2] = rgb[src + 2];
    }
  }
  return out;
}

/** One image (N = 1) or a grid of N images, as raw RGB with its size. */
export function gridRgb(images: Float32Array, n: number, res: number, opts: GridOptions = {}) {
  const s = opts.scale ?? 1;
  const cols = n === 1 ? 1 : (opts.columns ?? Math.ceil(Math.sqrt(n)));
  const rows = Math.ceil(n / cols);
  const gap = n === 1 ? 0 : (opts.gap ?? 2);
  const tile = res * s;
  const width = cols * tile + (cols - 1) * gap;
  const height = rows * tile + (rows - 1) * gap;
  const out = new Uint8Array(width * height * 3).fill(255);
  for (let i = 0; i < n; i++) {
    const t = upscale(toRgb8(images, i, res), res, s);
    const ox = (i % cols) * (tile + gap);
    const oy = Math.floor(i / cols) * (tile + gap);
    for (let y = 0; y < tile; y++) out.set(t.subarray(y * tile * 3, (y + 1) * tile * 3), ((oy + y) * width + ox) * 3);
  }
  return { data: out, width, height };
}

/** Encode raw RGB as PNG/JPEG/WebP by the file extension and write it atomically. */
export async function writeRgbImage(path: string, rgb: { data: Uint8Array; width: number; height: number }): Promise<void> {
  const ext = extname(path).toLowerCase();
  const img = sharp(Buffer.from(rgb.data.buffer, rgb.data.byteOffset, rgb.data.byteLength), { raw: { width: rgb.width, height: rgb.height, channels: 3 } });
  const encoded = ext === '.jpg' || ext === '.jpeg' ? img.jpeg({ quality: 95 }) : ext === '.webp' ? img.webp({ lossless: true }) : img.png();
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}${ext}`);
  try {
    await encoded.toFile(tmp);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* nothing was written */ }
    throw e;
  }
}

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'];
