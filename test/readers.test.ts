// Checkpoint readers: files written by torch.save and numpy (test/fixtures/readers, made by
// training/make_reader_fixtures.py), files written by our own writers, hostile pickles, truncated files and
// dtypes we cannot convert. Float conversions are compared against independent brute-force roundings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCheckpoint, readCheckpointBytes } from '../src/io/checkpoint.ts';
import { readNpy, encodeNpy } from '../src/io/npy.ts';
import { makeGlobals, PickleError, unpickle, UnsafePickleError } from '../src/io/pickle.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { contiguousStrides, type StateDict } from '../src/io/tensor.ts';
import { readZipDirectory, zipEntryData } from '../src/io/torch.ts';
import {
  encodeSafetensors, encodeTorchLegacy, encodeTorchZip, tfLayoutStrides, type TensorEntry, type WriteDType,
} from '../src/io/writers.ts';
import { normalSource } from '../src/model/random.ts';

const FIX = new URL('./fixtures/readers/', import.meta.url).pathname;
const HF = new URL('./fixtures/hf-fixture/', import.meta.url).pathname;
const fixture = (f: string) => readFileSync(join(FIX, f));

interface Expected { dtype: string; shape: number[]; values: number[] }
const expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as Record<'torch' | 'safetensors', Record<string, Expected>>;

function assertMatches(sd: StateDict, want: Record<string, Expected>, label: string) {
  assert.deepEqual([...sd.keys()].sort(), Object.keys(want).sort(), `${label}: keys`);
  for (const [k, e] of Object.entries(want)) {
    const t = sd.get(k)!;
    assert.deepEqual(t.shape, e.shape, `${label} ${k}: shape`);
    assert.equal(t.stored, e.dtype, `${label} ${k}: dtype`);
    assert.deepEqual([...t.data], e.values, `${label} ${k}: values`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Independent float conversions: the nearest representable value by search, ties to an even significand.

/** All finite halves, decoded from the definition (sign, 5-bit exponent, 10-bit fraction), sorted by value. */
const HALVES: { v: number; bits: number }[] = (() => {
  const out: { v: number; bits: number }[] = [];
  for (let bits = 0; bits < 0x10000; bits++) {
    const e = (bits >> 10) & 31;
    const m = bits & 1023;
    if (e === 31) continue;
    const mag = e === 0 ? m * 2 ** -24 : 2 ** (e - 15) * (1 + m / 1024);
    out.push({ v: bits & 0x8000 ? -mag : mag, bits });
  }
  return out.sort((a, b) => a.v - b.v);
})();

function nearestHalf(x: number): number {
  const max = 65504;
  // beyond the largest half by at least half an ulp (2^15 / 2^10 / 2 = 16) rounds to infinity
  if (Math.abs(x) >= max + 16) return Math.sign(x) * Infinity;
  let lo = 0;
  let hi = HALVES.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (HALVES[mid].v <= x) lo = mid; else hi = mid;
  }
  const a = HALVES[lo];
  const b = HALVES[hi];
  const da = Math.abs(x - a.v);
  const db = Math.abs(x - b.v);
  if (da !== db) return da < db ? a.v : b.v;
  return (a.bits & 1) === 0 ? a.v : b.v;
}

function nearestBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const down = u[0] & 0xffff0000;
  const lower = new Float32Array(new Uint32Array([down]).buffer)[0];
  const upper = new Float32Array(new Uint32Array([(down + 0x10000) >>> 0]).buffer)[0];
  // IEEE rounding with an unbounded exponent: the step past the largest finite value lands on 2^128
  const upperValue = Number.isFinite(upper) ? upper : Math.sign(upper) * 2 ** 128;
  const dl = Math.abs(f[0] - lower);
  const du = Math.abs(upperValue - f[0]);
  if (dl !== du) return dl < du ? lower : upper;
  return ((down >>> 16) & 1) === 0 ? lower : upper;
}

function sampleValues(): Float32Array {
  const rnd = normalSource(5);
  const special = [0, -0, 1, -2, 0.1, 1 / 3, 65504, 65519, 65520, -65520, 1e6, 2 ** -14, 2 ** -24, 2 ** -25,
    3 * 2 ** -26, 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, 1e-40];
  const v = new Float32Array(special.length + 2000);
  v.set(special);
  for (let i = special.length; i < v.length; i++) v[i] = rnd() * 10 ** Math.floor(rnd() * 3);
  return v;
}

const same = (a: number, b: number) => Object.is(a, b) || (a === b);

test('safetensors round trips: F32 exactly, F16 and BF16 rounded to nearest-even like an independent search', () => {
  const values = sampleValues();
  const entries: TensorEntry[] = [
    { name: 'f32', shape: [values.length], data: values },
    { name: 'f16', shape: [values.length], data: values, dtype: 'F16' },
    { name: 'bf16', shape: [2, values.length / 2], data: values, dtype: 'BF16' },
    { name: 'scalar', shape: [], data: new Float32Array([7.5]) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
  ];
  const sd = readSafetensors(encodeSafetensors(entries, { format: 'pt' }));
  assert.deepEqual([...sd.keys()].sort(), ['bf16', 'empty', 'f16', 'f32', 'scalar']);
  assert.deepEqual([...sd.get('f32')!.data], [...values]);
  assert.deepEqual(sd.get('bf16')!.shape, [2, values.length / 2]);
  assert.deepEqual(sd.get('scalar')!.shape, []);
  assert.deepEqual([...sd.get('scalar')!.data], [7.5]);
  assert.deepEqual(sd.get('empty')!.shape, [0, 4]);
  const f16 = sd.get('f16')!;
  const bf16 = sd.get('bf16')!;
  assert.equal(f16.stored, 'F16');
  assert.equal(bf16.stored, 'BF16');
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    assert.ok(same(f16.data[i], nearestHalf(x)), `F16 of ${x}: got ${f16.data[i]}, nearest-even is ${nearestHalf(x)}`);
    assert.ok(same(bf16.data[i], nearestBf16(x)), `BF16 of ${x}: got ${bf16.data[i]}, nearest-even is ${nearestBf16(x)}`);
  }
  // specific facts the search must agree with: halves tie to even, 65520 overflows, 2^-25 ties down to 0
  assert.equal(f16.data[8], Infinity);
  assert.equal(f16.data[13], 0);
  assert.equal(f16.data[16], 1); // 1 + 2^-11 is half way to the next half (1 + 2^-10): ties to 1
  assert.equal(f16.data[17], 1 + 2 ** -9);
  const nan = readSafetensors(encodeSafetensors([{ name: 'n', shape: [1], data: new Float32Array([NaN]), dtype: 'F16' }]));
  assert.ok(Number.isNaN(nan.get('n')!.data[0]));
});

test('safetensors written by numpy (another writer): F32, F16, BF16, I64 and a scalar, exact values', () => {
  assertMatches(readCheckpoint(join(FIX, 'numpy.safetensors')), expected.safetensors, 'numpy.safetensors');
});

test('torch.save files (zip, legacy, nested dict): strided TF-layout views, offset and step views into one storage, every dtype', () => {
  for (const f of ['torch-zip.pth', 'torch-legacy.pth', 'torch-nested.pth']) {
    assertMatches(readCheckpoint(join(FIX, f)), expected.torch, f);
  }
});

test('the published-layout fixture: torch.save zip and legacy (non-contiguous) equal the contiguous safetensors copy', () => {
  const ref = readCheckpoint(join(HF, 'model.safetensors'));
  for (const f of ['model-zip.pth', 'model-legacy.pth']) {
    const sd = readCheckpoint(join(HF, f));
    assert.deepEqual([...sd.keys()].sort(), [...ref.keys()].sort(), f);
    for (const [k, t] of ref) {
      assert.deepEqual(sd.get(k)!.shape, t.shape, `${f} ${k}`);
      assert.deepEqual(sd.get(k)!.data, t.data, `${f} ${k}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Our own torch writers

function randomEntries(dtype: WriteDType = 'F32'): TensorEntry[] {
  const rnd = normalSource(9);
  const mk = (name: string, shape: number[]): TensorEntry => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => rnd());
    return { name, shape, data, dtype };
  };
  return [mk('lin.weight_orig', [6, 5]), mk('conv.weight_orig', [4, 3, 3, 3]), mk('conv.bias', [4]),
    mk('u', [6]), mk('v', [5]), mk('stats', [3, 4]), mk('gamma', [1])];
}

function roundTo(dtype: WriteDType, x: Float32Array): number[] {
  return [...x].map((v) => (dtype === 'F32' ? v : dtype === 'F16' ? nearestHalf(v) : nearestBf16(v)));
}

test('our torch zip and legacy writers: TF-layout strided views, shared storages with offsets, nesting, F32/F16/BF16', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as WriteDType[]) {
    const entries = randomEntries(dtype);
    const opts = { transposeLayout: true, shareStorage: [['u', 'v'], ['stats', 'gamma']], nestUnder: 'G_ema' };
    for (const [label, bytes] of [['zip', encodeTorchZip(entries, opts)], ['legacy', encodeTorchLegacy(entries, opts)]] as const) {
      const sd = readCheckpointBytes(bytes);
      assert.deepEqual([...sd.keys()], entries.map((e) => e.name), `${label} ${dtype}`);
      for (const e of entries) {
        const t = sd.get(e.name)!;
        assert.deepEqual(t.shape, e.shape);
        assert.equal(t.stored, dtype);
        assert.deepEqual([...t.data], roundTo(dtype, e.data), `${label} ${dtype} ${e.name}`);
      }
    }
  }
});

test('the TF-layout option really stores TF order: storage bytes of a linear are [in, out], of a conv HWIO', () => {
  const entries = randomEntries();
  const dir = readZipDirectory(encodeTorchZip(entries, { transposeLayout: true }));
  const bytes = encodeTorchZip(entries, { transposeLayout: true });
  const storage = (i: number) => {
    const raw = zipEntryData(bytes, dir.get(`archive/data/${i}`)!);
    return new Float32Array(raw.slice().buffer);
  };
  const lin = entries[0];
  const [out, inn] = lin.shape;
  const s0 = storage(0);
  for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) assert.equal(s0[i * out + o], lin.data[o * inn + i]);
  const conv = entries[1];
  const [co, ci, kh, kw] = conv.shape;
  const s1 = storage(1);
  for (let o = 0; o < co; o++) for (let i = 0; i < ci; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    assert.equal(s1[((y * kw + x) * ci + i) * co + o], conv.data[((o * ci + i) * kh + y) * kw + x]);
  }
  assert.deepEqual(tfLayoutStrides([co, ci, kh, kw]), [1, co, kw * ci * co, ci * co]);
  assert.deepEqual(tfLayoutStrides([7]), contiguousStrides([7]));
});

// ---------------------------------------------------------------------------------------------------------------
// The restricted unpickler

test('the unpickler reads plain data written by Python at protocols 0 to 5', () => {
  for (let proto = 0; proto <= 5; proto++) {
    const { value } = unpickle(fixture(`plain-p${proto}.pkl`));
    const d = value as Map<string, unknown>;
    assert.deepEqual(d.get('int'), [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31, 2n ** 62n, -(2n ** 70n)], `protocol ${proto}`);
    assert.deepEqual(d.get('float'), [0.5, -1e300]);
    assert.deepEqual(d.get('str'), ['', 'h\u00e9llo \u2603']);
    assert.deepEqual(d.get('bytes'), Uint8Array.from([0, 255]));
    assert.deepEqual(d.get('tuple'), [1, [2, 3]]);
    assert.equal(d.get('none'), null);
    assert.deepEqual(d.get('bools'), [true, false]);
    assert.deepEqual(d.get('nested'), new Map([['a', [1, new Map([['b', 2]])]]]));
  }
});

const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

test('hostile pickles are refused by name and nothing runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cawa-hostile-'));
  const marker = join(dir, 'pwned');
  const cmd = `touch ${marker}`;
  const hostile: [string, Uint8Array, string][] = [
    ['GLOBAL os system', enc(`cos\nsystem\n(S'${cmd}'\ntR.`), 'os.system'],
    ['GLOBAL posix system', enc(`cposix\nsystem\n(S'${cmd}'\ntR.`), 'posix.system'],
    ['GLOBAL builtins eval', enc(`cbuiltins\neval\n(S'__import__("os").system("${cmd}")'\ntR.`), 'builtins.eval'],
    ['GLOBAL __builtin__ eval', enc(`c__builtin__\neval\n(S'1'\ntR.`), '__builtin__.eval'],
    ['GLOBAL builtins getattr', enc(`cbuiltins\ngetattr\n(cbuiltins\nobject\nS'x'\ntR.`), 'builtins.getattr'],
    ['GLOBAL subprocess Popen', enc(`csubprocess\nPopen\n((S'touch'\nS'${marker}'\nltR.`), 'subprocess.Popen'],
    ['INST os system', enc(`(S'${cmd}'\nios\nsystem\n.`), 'os.system'],
    ['STACK_GLOBAL (protocol 4)', fixture('evil-p4.pkl'), 'posix.system'],
    ['pickle.dump of __reduce__ (protocol 2)', fixture('evil-p2.pkl'), 'posix.system'],
    // near misses of allowed names must not slip through
    ['dotted name in an allowed module', enc(`ctorch._utils\n_rebuild_tensor_v2.__globals__\n.`), 'torch._utils._rebuild_tensor_v2.__globals__'],
    ['torch.load', enc(`ctorch\nload\n.`), 'torch.load'],
    ['module with a trailing space', enc(`ccollections \nOrderedDict\n.`), 'collections .OrderedDict'],
  ];
  for (const [label, bytes, name] of hostile) {
    assert.throws(() => unpickle(bytes, { globals: makeGlobals([]) }), (e: unknown) => {
      assert.ok(e instanceof UnsafePickleError, `${label}: ${String(e)}`);
      assert.match(e.message, new RegExp(`refusing pickle global ${name.replace(/[.$()_]/g, '\\$&')}: .*may be malicious`));
      return true;
    }, label);
  }
  // copyreg extension codes are a global lookup in disguise
  assert.throws(() => unpickle(Uint8Array.from([0x80, 2, 0x82, 1, 0x2e])), UnsafePickleError);
  // REDUCE of something that is not an allowed callable: a string, an inert type token, a dict
  const notCallable: [string, Uint8Array][] = [
    ['a string', enc(`S'os.system'\n(S'${cmd}'\ntR.`)],
    ['a type token', enc(`ctorch\nFloatStorage\n(tR.`)],
    ['a dict', enc(`(dp0\n(tR.`)],
  ];
  const torchGlobals = makeGlobals([{ module: 'torch', name: 'FloatStorage', tag: 'F32' }]);
  for (const [label, bytes] of notCallable) {
    assert.throws(() => unpickle(bytes, { globals: torchGlobals }), (e: unknown) => e instanceof PickleError && /cannot call/.test(e.message), label);
  }
  // the same payload inside real torch.save files (zip and legacy) is refused by the checkpoint reader
  for (const f of ['evil-zip.pth', 'evil-legacy.pth']) {
    assert.throws(() => readCheckpoint(join(FIX, f)), (e: unknown) =>
      e instanceof UnsafePickleError && e.module === 'posix' && e.qualname === 'system' && e.message.includes(f), f);
  }
  // a persistent id that is not a torch storage
  const badPid = enc(`(S'module'\nS'os'\ntQ.`);
  assert.throws(() => unpickle(badPid, { persistentLoad: () => { throw new PickleError('unsupported persistent id'); } }), /unsupported persistent id/);
  assert.ok(!existsSync(marker), 'nothing may have been executed');
});

// ---------------------------------------------------------------------------------------------------------------
// Truncation and unsupported dtypes

const CLEAR_TRUNCATION = /truncated|unexpected end|damaged|end of central directory not found/;

function cuts(length: number): number[] {
  const at = new Set<number>([1, 2, 4, 8, 9, 12, 15, 16, 20, 31, 64, length - 8, length - 4, length - 1]);
  for (let k = 1; k < 60; k++) at.add(Math.floor((length * k) / 60));
  return [...at].filter((n) => n > 0 && n < length).sort((a, b) => a - b);
}

test('every truncation of every format gives a clear error', () => {
  const entries = randomEntries();
  const files: [string, Uint8Array][] = [
    ['safetensors (ours)', encodeSafetensors(entries)],
    ['safetensors (numpy)', fixture('numpy.safetensors')],
    ['torch zip (ours)', encodeTorchZip(entries, { transposeLayout: true })],
    ['torch legacy (ours)', encodeTorchLegacy(entries, { transposeLayout: true })],
    ['torch zip (torch.save)', fixture('torch-zip.pth')],
    ['torch legacy (torch.save)', fixture('torch-legacy.pth')],
    ['BigGAN legacy (torch.save)', readFileSync(join(HF, 'model-legacy.pth'))],
  ];
  for (const [label, full] of files) {
    readCheckpointBytes(full); // the whole file is fine
    for (const n of cuts(full.length)) {
      assert.throws(() => readCheckpointBytes(full.subarray(0, n)), (e: unknown) => {
        const msg = (e as Error).message;
        assert.ok(CLEAR_TRUNCATION.test(msg) || (n < 16 && /only \d+ bytes: truncated/.test(msg)),
          `${label} cut to ${n} of ${full.length} bytes: unclear error "${msg}"`);
        return true;
      }, `${label} cut to ${n} bytes must fail`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'cawa-trunc-'));
  writeFileSync(join(dir, 'empty.pth'), new Uint8Array(0));
  assert.throws(() => readCheckpoint(join(dir, 'empty.pth')), /empty file/);
  assert.throws(() => readCheckpoint(join(dir, 'missing.pth')), /checkpoint not found/);
  const npy = encodeNpy([3, 4], new Float32Array(12));
  for (const n of [5, 20, npy.length - 1]) assert.throws(() => readNpy(npy.subarray(0, n)), /truncated|magic/);
});

function safetensorsWithHeader(header: Record<string, unknown>, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

test('unsupported or inconsistent dtypes give a clear error', () => {
  for (const dtype of ['C64', 'F8_E4M3', 'F8_E5M2', 'U16', 'U32', 'U64', 'I4', 'complex64']) {
    const buf = safetensorsWithHeader({ w: { dtype, shape: [2], data_offsets: [0, 16] } }, 16);
    assert.throws(() => readCheckpointBytes(buf), new RegExp(`tensor "w": unsupported dtype "${dtype}"`), dtype);
  }
  // the header's dtype does not fit the bytes it claims
  const wrongSize = safetensorsWithHeader({ w: { dtype: 'F16', shape: [4], data_offsets: [0, 16] } }, 16);
  assert.throws(() => readCheckpointBytes(wrongSize), /data_offsets \[0,16\] span 16 bytes but F16 \[4\] needs 8/);
  // a complex tensor written by torch.save
  assert.throws(() => readCheckpoint(join(FIX, 'complex-zip.pth')), /unsupported dtype torch\.ComplexFloatStorage/);
  // .npy: only little-endian floats
  const npy = (descr: string) => {
    const h = `{'descr': '${descr}', 'fortran_order': False, 'shape': (2,), }`.padEnd(117) + '\n';
    const b = new Uint8Array(10 + h.length + 16);
    b.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 0xff, h.length >> 8]);
    b.set(enc(h), 10);
    return b;
  };
  for (const d of ['<i4', '>f4', '<c8', '|u1']) assert.throws(() => readNpy(npy(d)), /npy: unsupported dtype/, d);
  assert.deepEqual([...readNpy(npy('<f8')).data], [0, 0]);
});
