// Readers written for the tests, independent of src/io and src/awareness/save.ts: a stored (uncompressed)
// zip's members from its local file headers, and a .npy v1.0 float32 array with its header dict.
import assert from 'node:assert/strict';

export function readStoredZip(buf: Uint8Array): Map<string, Uint8Array> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Map<string, Uint8Array>();
  let p = 0;
  while (p + 30 <= buf.length && dv.getUint32(p, true) === 0x04034b50) {
    const method = dv.getUint16(p + 8, true);
    const size = dv.getUint32(p + 18, true);
    const nameLen = dv.getUint16(p + 26, true);
    const extraLen = dv.getUint16(p + 28, true);
    const name = new TextDecoder().decode(buf.subarray(p + 30, p + 30 + nameLen));
    assert.equal(method, 0, `${name} is stored`);
    const start = p + 30 + nameLen + extraLen;
    out.set(name, buf.subarray(start, start + size));
    p = start + size;
  }
  return out;
}

export function parseNpy(b: Uint8Array): { header: string; shape: number[]; data: Float32Array } {
  assert.deepEqual(Array.from(b.subarray(0, 8)), [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 'magic and version 1.0');
  const len = b[8] | (b[9] << 8);
  const header = new TextDecoder('latin1').decode(b.subarray(10, 10 + len));
  assert.equal((10 + len) % 64, 0, 'data aligned to 64 bytes');
  const m = /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(([\d, ]*)\), \} *\n$/.exec(header);
  assert.ok(m, `header ${JSON.stringify(header)}`);
  const shape = m![1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const bytes = Uint8Array.from(b.subarray(10 + len)); // a copy: b may be a view into a larger Buffer
  assert.equal(bytes.byteLength, 4 * shape.reduce((a, x) => a * x, 1), 'data size matches the shape');
  return { header, shape, data: new Float32Array(bytes.buffer) };
}
