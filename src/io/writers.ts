// Checkpoint writers: safetensors for our own exports, and torch.save-compatible zip/legacy files (the same
// GLOBALs, persistent ids and container layout torch writes) so tests can exercise the readers on realistic files,
// including the transposed TF-layout views of the published BigGAN-deep weights.

import { writeFileAtomic } from './atomic.ts';
import { LEGACY_MAGIC } from './torch.ts';
import { PickleWriter } from './pickle.ts';
import { contiguousStrides, DTYPE_SIZE, encodeFromFloat32, numel, scatterStrided, shapeString } from './tensor.ts';

export type WriteDType = 'F32' | 'F16' | 'BF16';

export interface TensorEntry {
  name: string;
  shape: number[];
  /** contiguous row-major values */
  data: Float32Array;
  /** dtype to store (default F32) */
  dtype?: WriteDType;
}

function checkEntries(entries: readonly TensorEntry[]): void {
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) throw new Error(`duplicate tensor name ${e.name}`);
    seen.add(e.name);
    if (numel(e.shape) !== e.data.length) {
      throw new Error(`tensor ${e.name}: shape ${shapeString(e.shape)} needs ${numel(e.shape)} values, got ${e.data.length}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// safetensors

export function encodeSafetensors(entries: readonly TensorEntry[], metadata?: Record<string, string>): Uint8Array {
  checkEntries(entries);
  if (entries.some((e) => e.name === '__metadata__')) throw new Error('tensor name __metadata__ is reserved');
  // Wider dtypes first, so every tensor's data stays aligned to its element size without gaps (the format
  // forbids holes in the data area); the sort is stable, keeping the caller's order within a dtype.
  const ordered = [...entries].sort((a, b) => DTYPE_SIZE[b.dtype ?? 'F32'] - DTYPE_SIZE[a.dtype ?? 'F32']);
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const e of ordered) {
    const bytes = encodeFromFloat32(e.data, e.dtype ?? 'F32');
    header[e.name] = { dtype: e.dtype ?? 'F32', shape: e.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8); // data area starts 8-byte aligned
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  for (const b of blobs) { out.set(b, p); p += b.length; }
  return out;
}

export function writeSafetensors(path: string, entries: readonly TensorEntry[], metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(entries, metadata));
}

// ---------------------------------------------------------------------------------------------------------------
// torch.save structure

export interface TorchEncodeOptions {
  /** Store 2-D/4-D tensors like the BigGAN TF→PT converter: TF-layout storage ([in,out] / HWIO), strided view. */
  transposeLayout?: boolean;
  /** Groups of tensor names that share one storage, laid end to end (later ones get a storage_offset). */
  shareStorage?: string[][];
  /** Wrap the state_dict as `{nestUnder: state_dict, 'epoch': 1}`, like training checkpoints do. */
  nestUnder?: string;
  /** Zip only: the top-level folder inside the archive (torch uses the file's base name; 'archive' for buffers). */
  archiveName?: string;
}

interface StoragePlan { key: string; dtype: WriteDType; data: Float32Array }
interface TensorPlan { name: string; storage: StoragePlan; offset: number; shape: number[]; stride: number[] }

const STORAGE_CLASS: Record<WriteDType, string> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };

/** Strides of a PyTorch-shaped view onto TF-layout memory: [out,in] over [in,out]; [out,in,kh,kw] over HWIO. */
export function tfLayoutStrides(shape: readonly number[]): number[] {
  if (shape.length === 2) return [1, shape[0]];
  if (shape.length === 4) {
    const [out, inC, , kw] = shape;
    return [1, out, kw * inC * out, inC * out];
  }
  return contiguousStrides(shape);
}

/** Decide storages and views; storage contents are written through each tensor's (offset, stride). */
function planStorages(entries: readonly TensorEntry[], opts: TorchEncodeOptions, keyOf: (i: number) => string):
  { tensors: TensorPlan[]; storages: StoragePlan[] } {
  checkEntries(entries);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const groupOf = new Map<string, string[]>();
  for (const g of opts.shareStorage ?? []) {
    for (const n of g) {
      if (!byName.has(n)) throw new Error(`shareStorage: no tensor named ${n}`);
      if (groupOf.has(n)) throw new Error(`shareStorage: ${n} is in two groups`);
      groupOf.set(n, g);
    }
  }
  const storages: StoragePlan[] = [];
  const planned = new Map<string, TensorPlan>();
  for (const e of entries) {
    if (planned.has(e.name)) continue;
    const group = (groupOf.get(e.name) ?? [e.name]).map((n) => byName.get(n)!);
    const dtype = e.dtype ?? 'F32';
    if (group.some((g) => (g.dtype ?? 'F32') !== dtype)) throw new Error(`shareStorage: group of ${e.name} mixes dtypes`);
    const storage: StoragePlan = { key: keyOf(storages.length), dtype, data: new Float32Array(group.reduce((s, g) => s + g.data.length, 0)) };
    storages.push(storage);
    let offset = 0;
    for (const g of group) {
      const stride = opts.transposeLayout ? tfLayoutStrides(g.shape) : contiguousStrides(g.shape);
      scatterStrided(storage.data, offset, g.shape, stride, g.data);
      planned.set(g.name, { name: g.name, storage, offset, shape: g.shape, stride });
      offset += g.data.length;
    }
  }
  return { tensors: entries.map((e) => planned.get(e.name)!), storages };
}

function writeIntTuple(w: PickleWriter, xs: readonly number[]): void {
  if (xs.length === 0) { w.emptyTuple(); return; }
  if (xs.length <= 3) { xs.forEach((x) => w.int(x)); w.tupleN(xs.length as 1 | 2 | 3); } else { w.mark(); xs.forEach((x) => w.int(x)); w.tuple(); }
  w.memo();
}

function writeEmptyOrderedDict(w: PickleWriter): void {
  w.global('collections', 'OrderedDict').emptyTuple().reduce().memo();
}

/** `_rebuild_tensor_v2(('storage', torch.XStorage, key, 'cpu', numel[, None]), offset, size, stride, False, OrderedDict())` */
function writeTensor(w: PickleWriter, t: TensorPlan, legacy: boolean): void {
  w.global('torch._utils', '_rebuild_tensor_v2').mark();
  w.mark().str('storage').global('torch', STORAGE_CLASS[t.storage.dtype]).str(t.storage.key).str('cpu').int(t.storage.data.length);
  if (legacy) w.none(); // legacy ids carry view_metadata (always None since torch 0.4)
  w.tuple().memo().binPersId();
  w.int(t.offset);
  writeIntTuple(w, t.shape);
  writeIntTuple(w, t.stride);
  w.bool(false);
  writeEmptyOrderedDict(w);
  w.tuple().memo().reduce().memo();
}

/** The state_dict OrderedDict: REDUCE, SETITEMS in batches of 1000 (as pickle does), then BUILD with _metadata. */
function writeStateDict(w: PickleWriter, tensors: readonly TensorPlan[], legacy: boolean): void {
  writeEmptyOrderedDict(w);
  for (let i = 0; i < tensors.length; i += 1000) {
    w.mark();
    for (const t of tensors.slice(i, i + 1000)) { w.str(t.name); writeTensor(w, t, legacy); }
    w.setItems();
  }
  w.emptyDict().memo().str('_metadata');
  writeEmptyOrderedDict(w);
  w.str('').emptyDict().memo().str('version').int(1).setItem().setItem();
  w.setItem().build();
}

function mainPickle(tensors: readonly TensorPlan[], opts: TorchEncodeOptions, legacy: boolean): Uint8Array {
  const w = new PickleWriter().proto(2);
  if (opts.nestUnder !== undefined) w.emptyDict().memo().mark().str(opts.nestUnder);
  writeStateDict(w, tensors, legacy);
  if (opts.nestUnder !== undefined) w.str('epoch').int(1).setItems();
  return w.stop().bytes();
}

function storageBytes(s: StoragePlan): Uint8Array {
  return encodeFromFloat32(s.data, s.dtype);
}

// ---------------------------------------------------------------------------------------------------------------
// zip container (stored entries, data aligned to 64 bytes like torch's writer)

export function encodeTorchZip(entries: readonly TensorEntry[], opts: TorchEncodeOptions = {}): Uint8Array {
  const { tensors, storages } = planStorages(entries, opts, (i) => String(i));
  const dir = opts.archiveName ?? 'archive';
  const text = (s: string) => new TextEncoder().encode(s);
  return encodeStoredZip([
    { name: `${dir}/data.pkl`, data: mainPickle(tensors, opts, false) },
    { name: `${dir}/byteorder`, data: text('little') },
    ...storages.map((s) => ({ name: `${dir}/data/${s.key}`, data: storageBytes(s) })),
    { name: `${dir}/version`, data: text('3\n') },
  ]);
}

export function writeTorchZip(path: string, entries: readonly TensorEntry[], opts: TorchEncodeOptions = {}): void {
  writeFileAtomic(path, encodeTorchZip(entries, opts));
}

let crcTable: Uint32Array | undefined;

function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function encodeStoredZip(files: { name: string; data: Uint8Array }[]): Uint8Array {
  const enc = new TextEncoder();
  const locals: { name: Uint8Array; pad: number; offset: number; crc: number; size: number }[] = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    if (f.data.length > 0xfffffffe) throw new Error('zip: entries over 4 GiB need zip64, which this writer does not do');
    // The extra field (id 'FB', as torch writes) pads the header so entry data starts on a 64-byte boundary.
    const pad = (64 - ((offset + 30 + name.length + 4) % 64)) % 64;
    locals.push({ name, pad, offset, crc: crc32(f.data), size: f.data.length });
    offset += 30 + name.length + 4 + pad + f.data.length;
  }
  const cdSize = locals.reduce((s, l) => s + 46 + l.name.length, 0);
  const out = new Uint8Array(offset + cdSize + 22);
  const dv = new DataView(out.buffer);
  files.forEach((f, i) => {
    const l = locals[i];
    dv.setUint32(l.offset, 0x04034b50, true);
    writeCommonFields(dv, l.offset + 4, l);
    dv.setUint16(l.offset + 26, l.name.length, true);
    dv.setUint16(l.offset + 28, 4 + l.pad, true);
    out.set(l.name, l.offset + 30);
    dv.setUint16(l.offset + 30 + l.name.length, 0x4246, true);
    dv.setUint16(l.offset + 32 + l.name.length, l.pad, true);
    out.set(f.data, l.offset + 34 + l.name.length + l.pad);
  });
  let p = offset;
  for (const l of locals) {
    dv.setUint32(p, 0x02014b50, true);
    dv.setUint16(p + 4, 20, true); // version made by; the central header has it before the shared fields
    writeCommonFields(dv, p + 6, l);
    dv.setUint16(p + 28, l.name.length, true);
    dv.setUint32(p + 42, l.offset, true);
    out.set(l.name, p + 46);
    p += 46 + l.name.length;
  }
  dv.setUint32(p, 0x06054b50, true);
  dv.setUint16(p + 8, locals.length, true);
  dv.setUint16(p + 10, locals.length, true);
  dv.setUint32(p + 12, cdSize, true);
  dv.setUint32(p + 16, offset, true);
  return out;
}

/** The fields both header kinds share, from "version needed" on: version, flags, method (0 = stored), DOS time
 *  and date (0: torch writes no timestamps either), crc-32, compressed and uncompressed size. */
function writeCommonFields(dv: DataView, q: number, l: { crc: number; size: number }): void {
  dv.setUint16(q, 20, true); // version needed to extract: 2.0
  dv.setUint16(q + 2, 0, true);
  dv.setUint16(q + 4, 0, true);
  dv.setUint16(q + 6, 0, true);
  dv.setUint16(q + 8, 0, true);
  dv.setUint32(q + 10, l.crc, true);
  dv.setUint32(q + 14, l.size, true);
  dv.setUint32(q + 18, l.size, true);
}

// ---------------------------------------------------------------------------------------------------------------
// legacy container

export function encodeTorchLegacy(entries: readonly TensorEntry[], opts: TorchEncodeOptions = {}): Uint8Array {
  // Legacy keys are storage addresses printed in decimal; decreasing ones make the sorted key list (the data
  // order) differ from first-use order, as it often does in real files.
  const { tensors, storages } = planStorages(entries, opts, (i) => String(94_000_000_000_000 - 4096 * (i + 1)));
  const parts: Uint8Array[] = [
    new PickleWriter().proto(2).long(LEGACY_MAGIC).stop().bytes(),
    new PickleWriter().proto(2).int(1001).stop().bytes(),
    sysInfoPickle(),
    mainPickle(tensors, opts, true),
  ];
  const sorted = [...storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const keys = new PickleWriter().proto(2).emptyList().memo().mark();
  for (const s of sorted) keys.str(s.key);
  parts.push(keys.appends().stop().bytes());
  for (const s of sorted) {
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(s.data.length), true);
    parts.push(count, storageBytes(s));
  }
  return concat(parts);
}

export function writeTorchLegacy(path: string, entries: readonly TensorEntry[], opts: TorchEncodeOptions = {}): void {
  writeFileAtomic(path, encodeTorchLegacy(entries, opts));
}

function sysInfoPickle(): Uint8Array {
  const w = new PickleWriter().proto(2).emptyDict().memo().mark();
  w.str('protocol_version').int(1001).str('little_endian').bool(true).str('type_sizes');
  w.emptyDict().memo().mark().str('short').int(2).str('int').int(4).str('long').int(4).setItems();
  return w.setItems().stop().bytes();
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let p = 0;
  for (const b of parts) { out.set(b, p); p += b.length; }
  return out;
}
