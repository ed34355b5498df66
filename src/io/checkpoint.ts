// One entry point for weights on disk: sniff the format from the first bytes, then hand off to its reader.

import { readFileSync, statSync } from 'node:fs';
import { readSafetensors } from './safetensors.ts';
import { readTorchLegacy, readTorchZip } from './torch.ts';
import type { StateDict } from './tensor.ts';

export type CheckpointFormat = 'torch-zip' | 'torch-legacy' | 'safetensors';

/** Bytes 2..11 of a legacy file: LONG1 with the 10-byte magic 0x1950a86a20f9469cfc6c, little-endian. */
const LEGACY_MAGIC_BYTES = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export function detectFormat(buf: Uint8Array): CheckpointFormat {
  if (buf.length === 0) throw new Error('empty file: not a checkpoint');
  if (startsWith(buf, [0x50, 0x4b, 0x03, 0x04])) return 'torch-zip';
  if (isLegacyTorch(buf)) return 'torch-legacy';
  if (looksLikeSafetensors(buf)) return 'safetensors';
  const head = [...buf.subarray(0, 12)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  // A file cut within its first bytes can no longer be recognised; say so rather than only "unknown".
  const short = buf.length < 16 ? `, only ${buf.length} bytes: truncated, or not a checkpoint` : '';
  throw new Error(`unknown checkpoint format (first bytes: ${head}${short}); expected a torch zip (PK\\x03\\x04), ` +
    'a legacy torch.save file (\\x80\\x02\\x8a\\x0a...) or safetensors (u64 header length, then "{")');
}

function startsWith(buf: Uint8Array, bytes: number[], at = 0): boolean {
  return bytes.every((b, i) => buf[at + i] === b);
}

/** torch.save writes the magic at protocol 2 by default; other protocols add a FRAME opcode before LONG1. */
function isLegacyTorch(buf: Uint8Array): boolean {
  if (buf[0] !== 0x80 || buf[1] < 2 || buf[1] > 5) return false;
  for (let p = 2; p <= 12; p++) {
    if (buf[p] === 0x8a && buf[p + 1] === 0x0a && startsWith(buf, LEGACY_MAGIC_BYTES, p + 2)) return true;
  }
  return false;
}

/** Safetensors has no magic: a u64 header length followed by a JSON object. Accept lengths past EOF here so
 *  that the reader can report the truncation precisely. */
function looksLikeSafetensors(buf: Uint8Array): boolean {
  if (buf.length < 9 || buf[8] !== 0x7b /* { */) return false;
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  return n >= 2n && n < 100_000_000n;
}

export function readCheckpointBytes(buf: Uint8Array): StateDict {
  switch (detectFormat(buf)) {
    case 'torch-zip': return readTorchZip(buf);
    case 'torch-legacy': return readTorchLegacy(buf);
    case 'safetensors': return readSafetensors(buf);
  }
}

/** Read a checkpoint file. Float32 tensors may be zero-copy views into the file buffer. */
export function readCheckpoint(path: string): StateDict {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new Error(`checkpoint not found: ${path}`);
  }
  if (size === 0) throw new Error(`${path}: empty file, not a checkpoint`);
  const buf = readFileSync(path);
  try {
    return readCheckpointBytes(buf);
  } catch (e) {
    // Keep the error's class (UnsafePickleError must stay recognisable) and add the path for context.
    if (e instanceof Error) e.message = `${path}: ${e.message}`;
    throw e;
  }
}
