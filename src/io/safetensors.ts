// Safetensors reader. Layout: u64 LE header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`, then the data area; offsets are
// relative to the first byte after the header.

import { DTYPE_SIZE, decodeToFloat32, numel, shapeString, type StateDict, type StoredDType } from './tensor.ts';

/** Safetensors dtype names we can convert to float32 (the names match our StoredDType, plus BOOL). */
const SUPPORTED = new Set<string>(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);

interface HeaderEntry { dtype: string; shape: number[]; data_offsets: [number, number] }

/** Sanity limit for the JSON header (the reference implementation uses 100 MB). */
const MAX_HEADER = 100_000_000;

export function readSafetensors(buf: Uint8Array): StateDict {
  const { header, dataStart } = parseHeader(buf);
  const dataLen = buf.length - dataStart;
  const out: StateDict = new Map();
  for (const [key, raw] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const e = checkEntry(key, raw);
    const [begin, end] = e.data_offsets;
    if (end > dataLen) {
      throw new Error(`truncated: expected ${end - begin} bytes of data for key ${key} at data offset ${begin}, ` +
        `file has ${Math.max(0, dataLen - begin)} (file size ${buf.length})`);
    }
    const dtype = e.dtype as StoredDType;
    const data = decodeToFloat32(buf.subarray(dataStart + begin, dataStart + end), dtype);
    out.set(key, { shape: e.shape, data, stored: dtype });
  }
  return out;
}

function parseHeader(buf: Uint8Array): { header: Record<string, unknown>; dataStart: number } {
  if (buf.length < 8) throw new Error(`safetensors: file is ${buf.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(buf.length - 8)) {
    throw new Error(`truncated: safetensors header length ${n} exceeds the ${buf.length - 8} bytes after it`);
  }
  if (n > BigInt(MAX_HEADER)) throw new Error(`safetensors: header length ${n} is implausibly large`);
  const len = Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + len)));
  } catch (e) {
    throw new Error(`safetensors: header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error('safetensors: header is not a JSON object');
  }
  return { header: header as Record<string, unknown>, dataStart: 8 + len };
}

function checkEntry(key: string, raw: unknown): HeaderEntry {
  const bad = (why: string) => new Error(`safetensors: tensor ${JSON.stringify(key)}: ${why}`);
  if (typeof raw !== 'object' || raw === null) throw bad('header entry is not an object');
  const e = raw as Partial<HeaderEntry>;
  if (typeof e.dtype !== 'string' || !SUPPORTED.has(e.dtype)) throw bad(`unsupported dtype ${JSON.stringify(e.dtype)}`);
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`bad shape ${JSON.stringify(e.shape)}`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
    throw bad(`bad data_offsets ${JSON.stringify(off)}`);
  }
  const want = numel(e.shape) * DTYPE_SIZE[e.dtype as StoredDType];
  if (off[1] - off[0] !== want) {
    throw bad(`data_offsets [${off}] span ${off[1] - off[0]} bytes but ${e.dtype} ${shapeString(e.shape)} needs ${want}`);
  }
  return e as HeaderEntry;
}
