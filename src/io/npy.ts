// NumPy .npy (format 1.0-3.0) for float arrays: what the analysis code exchanges with Python.

import { writeFileAtomic } from './atomic.ts';
import { decodeToFloat32, numel, shapeString, type StoredDType } from './tensor.ts';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCR: Record<string, StoredDType> = { '<f4': 'F32', '<f8': 'F64', '<f2': 'F16' };

export function readNpy(buf: Uint8Array): { shape: number[]; data: Float32Array } {
  if (buf.length < 10 || !MAGIC.every((b, i) => buf[i] === b)) throw new Error('npy: missing \\x93NUMPY magic');
  const major = buf[6];
  if (major < 1 || major > 3) throw new Error(`npy: unsupported format version ${major}.${buf[7]}`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  const headerLen = major === 1 ? dv.getUint16(8, true) : buf.length >= 12 ? dv.getUint32(8, true) : Infinity;
  const dataStart = 8 + lenBytes + headerLen;
  if (dataStart > buf.length) throw new Error(`truncated: npy header needs ${dataStart} bytes, file has ${buf.length}`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(8 + lenBytes, dataStart));
  const { dtype, shape } = parseHeader(header);
  const need = numel(shape) * (dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : 2);
  if (buf.length - dataStart < need) {
    throw new Error(`truncated: expected ${need} bytes of data for ${dtype} ${shapeString(shape)}, file has ${buf.length - dataStart}`);
  }
  // Always copy: callers own the result (and small Buffers from readFileSync share a pool).
  // (Uint8Array.prototype.slice copies; Buffer#slice would return a view into the pool.)
  const bytes = Uint8Array.prototype.slice.call(buf, dataStart, dataStart + need);
  return { shape, data: dtype === 'F32' ? new Float32Array(bytes.buffer) : decodeToFloat32(bytes, dtype) };
}

/** Parse the Python-literal header `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`. */
function parseHeader(h: string): { dtype: StoredDType; shape: number[] } {
  const descr = /'descr':\s*'([^']*)'/.exec(h)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(h)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(h)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`npy: unreadable header ${JSON.stringify(h.trim())}`);
  const dtype = DESCR[descr.replace(/^=/, '<')];
  if (!dtype) throw new Error(`npy: unsupported dtype ${descr} (need little-endian float: <f4, <f8 or <f2)`);
  if (fortran === 'True') throw new Error('npy: Fortran-order arrays are not supported; save with C order');
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`npy: bad shape (${shapeText})`);
  return { dtype, shape };
}

/** Encode a float32 array as .npy v1.0 (header padded so the data starts on a 64-byte boundary). */
export function encodeNpy(shape: readonly number[], data: Float32Array): Uint8Array {
  if (numel(shape) !== data.length) throw new Error(`npy: shape ${shapeString(shape)} needs ${numel(shape)} values, got ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC);
  out.set([1, 0, header.length & 0xff, header.length >> 8], 6);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

export function writeNpy(path: string, shape: readonly number[], data: Float32Array): void {
  writeFileAtomic(path, encodeNpy(shape, data));
}
