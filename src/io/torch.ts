// PyTorch checkpoint readers: the zip format (torch >= 1.6) and the legacy concatenated-pickle format (< 1.6;
// the 2019 BigGAN-deep .bin files). Both decode the pickle with our restricted unpickler, where tensors come out
// as lazy TensorRefs (storage, offset, size, stride); only after the storages' bytes are located do we build
// contiguous float32 tensors, honouring storage_offset and stride (the BigGAN weights are transposed views).

import { inflateSync } from 'fflate';
import { makeGlobals, PickleError, unpickle, type PyGlobal } from './pickle.ts';
import {
  DTYPE_SIZE, decodeToFloat32, gatherStrided, isContiguous, numel, shapeString, stridedExtent,
  type StateDict, type StoredDType, type Tensor,
} from './tensor.ts';

// ---------------------------------------------------------------------------------------------------------------
// Pickle-level model of torch objects

interface StorageRef { kind: 'storage'; key: string; dtype: StoredDType; numel: number;
  /** legacy storage views: elements [offset, offset + size) of the root storage `key` */
  view?: { offset: number; size: number } }

interface TensorRef { kind: 'tensor'; storage: StorageRef; dtype: StoredDType; offset: number; shape: number[]; stride: number[] }

const STORAGE_DTYPES: Record<string, StoredDType> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
  UntypedStorage: 'U8',
};

const TORCH_DTYPES: Record<string, StoredDType> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16',
  int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

/** torch types that may appear in a checkpoint but have no float32 meaning here: recognised (so the error says
 *  "unsupported dtype" instead of "malicious global"), then refused when a tensor uses them. */
const UNSUPPORTED_STORAGES = ['ComplexFloatStorage', 'ComplexDoubleStorage', 'QInt8Storage', 'QUInt8Storage',
  'QInt32Storage', 'QUInt4x2Storage', 'QUInt2x4Storage'];
const UNSUPPORTED_DTYPES = ['complex32', 'complex64', 'complex128', 'qint8', 'quint8', 'qint32', 'quint4x2',
  'quint2x4', 'float8_e4m3fn', 'float8_e5m2', 'float8_e4m3fnuz', 'float8_e5m2fnuz', 'uint16', 'uint32', 'uint64'];

interface UnsupportedTag { unsupported: string }

function unsupportedDtype(tag: unknown): PickleError | undefined {
  const u = (tag as UnsupportedTag | undefined)?.unsupported;
  return u === undefined ? undefined
    : new PickleError(`unsupported dtype torch.${u}: only float (f64/f32/f16/bf16), integer and bool tensors can be read`);
}

function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

function intArg(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new PickleError(`${what} must be a non-negative integer, got ${String(v)}`);
  return v;
}

function intTuple(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new PickleError(`${what} must be a tuple of integers`);
  return v.map((x) => intArg(x, what));
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])` */
function rebuildTensor(args: unknown[], dtype?: unknown): TensorRef {
  const storage = args[0] as StorageRef;
  if (storage?.kind !== 'storage') throw new PickleError('_rebuild_tensor: first argument is not a storage');
  const shape = intTuple(args[2], 'tensor size');
  const stride = intTuple(args[3], 'tensor stride');
  if (stride.length !== shape.length) throw new PickleError(`tensor size ${shapeString(shape)} and stride ${shapeString(stride)} differ in rank`);
  const dt = dtype === undefined ? storage.dtype : dtypeToken(dtype);
  return { kind: 'tensor', storage, dtype: dt, offset: intArg(args[1], 'storage_offset'), shape, stride };
}

function dtypeToken(v: unknown): StoredDType {
  const dt = (v as PyGlobal | undefined)?.tag;
  const bad = unsupportedDtype(dt);
  if (bad) throw bad;
  if (typeof dt !== 'string') throw new PickleError('expected a torch dtype');
  return dt as StoredDType;
}

function tensorArg(v: unknown): TensorRef {
  if (!isTensorRef(v)) throw new PickleError('_rebuild_parameter: argument is not a tensor');
  return v;
}

/** The allow-list for torch checkpoints. Everything here is either inert (a tag) or builds plain data. */
const TORCH_GLOBALS = makeGlobals([
  ...Object.entries(STORAGE_DTYPES).map(([name, dtype]) => ({ module: 'torch', name, tag: dtype })),
  ...Object.entries(TORCH_DTYPES).map(([name, dtype]) => ({ module: 'torch', name, tag: dtype })),
  ...[...UNSUPPORTED_STORAGES, ...UNSUPPORTED_DTYPES].map((name) => ({ module: 'torch', name, tag: { unsupported: name } })),
  { module: 'torch._utils', name: '_rebuild_tensor_v2', call: (a: unknown[]) => rebuildTensor(a) },
  // v3 is v2 plus an explicit dtype (used for untyped storages): (storage, offset, size, stride, rg, hooks, dtype, …)
  { module: 'torch._utils', name: '_rebuild_tensor_v3', call: (a: unknown[]) => rebuildTensor(a, a[6]) },
  { module: 'torch._utils', name: '_rebuild_parameter', call: (a: unknown[]) => tensorArg(a[0]) },
  { module: 'torch._utils', name: '_rebuild_parameter_with_state', call: (a: unknown[]) => tensorArg(a[0]) },
  // _rebuild_from_type_v2(func, new_type, args, state): wraps tensor subclasses; we only keep the tensor.
  {
    module: 'torch._tensor', name: '_rebuild_from_type_v2',
    call: ([fn, , args]: unknown[]) => {
      const f = fn as PyGlobal;
      if (!f?.call || !Array.isArray(args)) throw new PickleError('_rebuild_from_type_v2: bad arguments');
      return tensorArg(f.call(args));
    },
  },
  { module: 'torch.nn.parameter', name: 'Parameter' }, // inert type tokens for the call above
  { module: 'torch._tensor', name: 'Tensor' },
  { module: 'torch', name: 'Tensor' },
]);

/** Persistent id `('storage', storage_type, key, location, numel[, view_metadata])` → StorageRef. */
function storageFromPid(pid: unknown): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
    throw new PickleError(`unsupported persistent id ${JSON.stringify(pid, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  }
  const [, type, key, , n, view] = pid as [string, PyGlobal, unknown, unknown, unknown, unknown];
  const dtype = type?.tag;
  const bad = unsupportedDtype(dtype);
  if (bad) throw bad;
  if (typeof dtype !== 'string' || !(type.name in STORAGE_DTYPES)) throw new PickleError('persistent id has no storage type');
  if (typeof key !== 'string') throw new PickleError('storage key is not a string');
  const ref: StorageRef = { kind: 'storage', key, dtype: dtype as StoredDType, numel: intArg(n, 'storage size') };
  if (Array.isArray(view)) {
    // Old legacy files: (view_key, offset, size) selects a slice of the root storage `key`.
    ref.view = { offset: intArg(view[1], 'storage view offset'), size: intArg(view[2], 'storage view size') };
  }
  return ref;
}

/** Unpickle a torch pickle, collecting every storage it references (by key). */
function unpickleTorch(buf: Uint8Array, start: number): { value: unknown; end: number; storages: Map<string, StorageRef> } {
  const storages = new Map<string, StorageRef>();
  const { value, end } = unpickle(buf, {
    globals: TORCH_GLOBALS,
    persistentLoad: (pid) => {
      const s = storageFromPid(pid);
      const prev = storages.get(s.key);
      if (prev && prev.dtype !== s.dtype) throw new PickleError(`storage ${s.key} used with dtypes ${prev.dtype} and ${s.dtype}`);
      if (!prev) storages.set(s.key, s); // legacy needs each key's dtype to step over its data
      return s;
    },
  }, start);
  return { value, end, storages };
}

// ---------------------------------------------------------------------------------------------------------------
// From pickled object to flat state dict

/**
 * Find the tensor dict: the top object itself if all its values are tensors, else its only value that is such a
 * dict (`{'state_dict': ..., 'epoch': 3}`, `{'G_ema': ...}`).
 */
function findTensorDict(top: unknown): Map<string, TensorRef> {
  const isTensorDict = (v: unknown): v is Map<string, TensorRef> =>
    v instanceof Map && [...v.values()].every(isTensorRef);
  if (isTensorDict(top)) return checkKeys(top);
  if (!(top instanceof Map)) throw new Error(`checkpoint holds ${isTensorRef(top) ? 'a single tensor' : 'no dict'}, not a state_dict`);
  const dicts = [...top.entries()].filter(([, v]) => isTensorDict(v) && v.size > 0);
  if (dicts.length === 1) return checkKeys(dicts[0][1] as Map<string, TensorRef>);
  const keys = [...top.keys()].map(String).join(', ');
  throw new Error(`cannot find the state_dict: ${dicts.length} dicts of tensors among top-level keys [${keys}]`);
}

function checkKeys(d: Map<unknown, TensorRef>): Map<string, TensorRef> {
  for (const k of d.keys()) if (typeof k !== 'string') throw new Error(`state_dict key ${String(k)} is not a string`);
  return d as Map<string, TensorRef>;
}

/** Build a contiguous float32 tensor from a view into storage bytes, bounds-checked. */
function materialize(name: string, t: TensorRef, storageBytes: Uint8Array): Tensor {
  const size = DTYPE_SIZE[t.dtype];
  const storageNumel = Math.floor(storageBytes.length / size);
  const extent = stridedExtent(t.shape, t.stride); // -1 for an empty view
  if (t.offset > storageNumel || t.offset + extent >= storageNumel) {
    throw new Error(`tensor ${name}: view ${shapeString(t.shape)} stride ${shapeString(t.stride)} offset ${t.offset} ` +
      `reaches element ${t.offset + extent} but its storage ${t.storage.key} has ${storageNumel} ${t.dtype} elements`);
  }
  const n = numel(t.shape);
  if (isContiguous(t.shape, t.stride)) {
    // Zero-copy for aligned F32: the tensor is a view into the file buffer.
    const bytes = storageBytes.subarray(t.offset * size, (t.offset + n) * size);
    return { shape: t.shape, data: decodeToFloat32(bytes, t.dtype), stored: t.dtype };
  }
  // Decode only the span this view touches (a temporary), then gather into row-major order.
  const span = decodeToFloat32(storageBytes.subarray(t.offset * size, (t.offset + extent + 1) * size), t.dtype);
  return { shape: t.shape, data: gatherStrided(span, 0, t.shape, t.stride), stored: t.dtype };
}

function buildStateDict(top: unknown, bytesOf: (s: StorageRef) => Uint8Array): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of findTensorDict(top)) out.set(name, materialize(name, t, bytesOf(t.storage)));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Zip container (torch >= 1.6)

export interface ZipEntry { name: string; method: number; compressedSize: number; size: number; localOffset: number }

/** Parse the zip central directory (with zip64 support); entry data is read lazily by zipEntryData. */
export function readZipDirectory(buf: Uint8Array): Map<string, ZipEntry> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const eocd = findEocd(buf, dv);
  let count = dv.getUint16(eocd + 10, true);
  let cdOffset = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    // zip64: the locator sits just before the EOCD and points at the zip64 EOCD record
    const loc = eocd - 20;
    if (loc < 0 || dv.getUint32(loc, true) !== 0x07064b50) throw new Error('zip: zip64 locator missing');
    const z = u64(dv, loc + 8, 'zip64 EOCD offset');
    if (z + 56 > buf.length || dv.getUint32(z, true) !== 0x06064b50) throw new Error('zip: zip64 EOCD record missing');
    count = u64(dv, z + 32, 'entry count');
    cdOffset = u64(dv, z + 48, 'central directory offset');
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || dv.getUint32(p, true) !== 0x02014b50) throw new Error(`zip: central directory entry ${i} is damaged`);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    if (p + 46 + nameLen + extraLen > buf.length) throw new Error(`zip: central directory entry ${i} is truncated`);
    const name = new TextDecoder().decode(buf.subarray(p + 46, p + 46 + nameLen));
    const e: ZipEntry = {
      name, method: dv.getUint16(p + 10, true), compressedSize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true), localOffset: dv.getUint32(p + 42, true),
    };
    applyZip64Extra(e, dv, p + 46 + nameLen, extraLen);
    entries.set(name, e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

function findEocd(buf: Uint8Array, dv: DataView): number {
  const min = Math.max(0, buf.length - 22 - 0xffff);
  for (let p = buf.length - 22; p >= min; p--) {
    if (dv.getUint32(p, true) === 0x06054b50) return p;
  }
  throw new Error(`truncated or damaged zip: end of central directory not found (file has ${buf.length} bytes)`);
}

function u64(dv: DataView, p: number, what: string): number {
  const v = dv.getBigUint64(p, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`zip: ${what} ${v} is too large`);
  return Number(v);
}

/** zip64 extended info (id 1) holds, in order, whichever of size/compressed size/offset overflowed 32 bits. */
function applyZip64Extra(e: ZipEntry, dv: DataView, start: number, len: number): void {
  for (let p = start; p + 4 <= start + len;) {
    const id = dv.getUint16(p, true);
    const size = dv.getUint16(p + 2, true);
    if (id === 1) {
      let q = p + 4;
      if (e.size === 0xffffffff) { e.size = u64(dv, q, 'entry size'); q += 8; }
      if (e.compressedSize === 0xffffffff) { e.compressedSize = u64(dv, q, 'entry size'); q += 8; }
      if (e.localOffset === 0xffffffff) { e.localOffset = u64(dv, q, 'entry offset'); }
    }
    p += 4 + size;
  }
}

/** Entry bytes: a zero-copy view for stored entries (what torch writes), inflated for deflated ones. */
export function zipEntryData(buf: Uint8Array, e: ZipEntry): Uint8Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const p = e.localOffset;
  if (p + 30 > buf.length || dv.getUint32(p, true) !== 0x04034b50) throw new Error(`zip: local header of ${e.name} is damaged`);
  // The local extra field can differ from the central one (torch pads it to align data to 64 bytes).
  const start = p + 30 + dv.getUint16(p + 26, true) + dv.getUint16(p + 28, true);
  if (start + e.compressedSize > buf.length) {
    throw new Error(`truncated: expected ${e.compressedSize} bytes of data for entry ${e.name}, file has ${Math.max(0, buf.length - start)}`);
  }
  const raw = buf.subarray(start, start + e.compressedSize);
  if (e.method === 0) return raw;
  if (e.method === 8) return inflateSync(raw, { out: new Uint8Array(e.size) });
  throw new Error(`zip: entry ${e.name} uses unsupported compression method ${e.method}`);
}

export function readTorchZip(buf: Uint8Array): StateDict {
  const dir = readZipDirectory(buf);
  const pkl = [...dir.keys()].filter((n) => n.endsWith('data.pkl') && n.split('/').length === 2);
  if (pkl.length !== 1) throw new Error(`torch zip: expected one <archive>/data.pkl, found ${pkl.length}`);
  const prefix = pkl[0].slice(0, -'data.pkl'.length);
  const byteorder = dir.get(`${prefix}byteorder`);
  if (byteorder && new TextDecoder().decode(zipEntryData(buf, byteorder)).trim() !== 'little') {
    throw new Error('torch zip: big-endian checkpoints are not supported');
  }
  const { value } = unpickleTorch(zipEntryData(buf, dir.get(pkl[0])!), 0);
  return buildStateDict(value, (s) => {
    const entry = dir.get(`${prefix}data/${s.key}`);
    if (!entry) throw new Error(`torch zip: missing data for storage key ${s.key} (${prefix}data/${s.key})`);
    const bytes = zipEntryData(buf, entry);
    const need = s.numel * DTYPE_SIZE[s.dtype];
    if (bytes.length < need) {
      throw new Error(`truncated: expected ${need} bytes of data for key ${s.key}, file has ${bytes.length}`);
    }
    return bytes.subarray(0, need);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Legacy format (torch < 1.6): magic, protocol, sys_info, main pickle, key list, then `[i64 count][data]` per key

export const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

export function readTorchLegacy(buf: Uint8Array): StateDict {
  let pos = 0;
  const next = (): unknown => { const r = unpickle(buf, {}, pos); pos = r.end; return r.value; };
  const magic = next();
  if (magic !== LEGACY_MAGIC) throw new Error('legacy torch: bad magic number (not a torch.save file)');
  const protocol = next();
  if (protocol !== 1001) throw new Error(`legacy torch: unsupported protocol version ${String(protocol)}`);
  const sysInfo = next();
  if (!(sysInfo instanceof Map) || sysInfo.get('little_endian') !== true) {
    throw new Error('legacy torch: only little-endian checkpoints are supported');
  }
  const main = unpickleTorch(buf, pos);
  pos = main.end;
  const keys = next();
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) throw new Error('legacy torch: storage key list is damaged');

  const data = new Map<string, Uint8Array>();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const key of keys as string[]) {
    const s = main.storages.get(key);
    if (!s) throw new Error(`legacy torch: storage key ${key} is listed but never referenced`);
    if (pos + 8 > buf.length) throw new Error(`truncated: expected 8 bytes of size header for key ${key}, file has ${buf.length - pos}`);
    const count = Number(dv.getBigInt64(pos, true));
    const need = count * DTYPE_SIZE[s.dtype];
    pos += 8;
    if (count < 0 || pos + need > buf.length) {
      throw new Error(`truncated: expected ${need} bytes of data for key ${key}, file has ${buf.length - pos}`);
    }
    data.set(key, buf.subarray(pos, pos + need));
    pos += need;
  }
  return buildStateDict(main.value, (s) => {
    const bytes = data.get(s.key);
    if (!bytes) throw new Error(`legacy torch: no data for storage key ${s.key}`);
    if (!s.view) return bytes;
    const size = DTYPE_SIZE[s.dtype];
    if ((s.view.offset + s.view.size) * size > bytes.length) throw new Error(`legacy torch: storage view outside storage ${s.key}`);
    return bytes.subarray(s.view.offset * size, (s.view.offset + s.view.size) * size);
  });
}
