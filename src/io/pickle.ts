// A small, restricted unpickler for PyTorch checkpoints, and a matching minimal pickle writer.
//
// Why our own: a pickle is a program for a stack machine whose GLOBAL/REDUCE opcodes call arbitrary Python
// callables. We only ever need plain data plus a handful of torch rebuild functions, so every global is looked
// up in an exact-match allow-list supplied by the caller and anything else throws UnsafePickleError. Nothing is
// ever executed: "calling" an allowed global runs a TypeScript function that the caller wrote.
//
// Python values map to: None → null, bool → boolean, int → number (bigint when not a safe integer),
// float → number, str → string, bytes → Uint8Array, list and tuple → Array, dict → Map.

export class PickleError extends Error {
  override name = 'PickleError';
}

/** Thrown for any global that is not on the allow-list (e.g. `os.system`). */
export class UnsafePickleError extends PickleError {
  override name = 'UnsafePickleError';
  constructor(readonly module: string, readonly qualname: string, detail = 'not on the allow-list') {
    super(`refusing pickle global ${module}.${qualname}: ${detail}; this file may be malicious`);
  }
}

/** An allow-listed global. `call` exists only for callables we implement; `tag` carries data for inert tokens. */
export interface PyGlobal {
  readonly module: string;
  readonly name: string;
  readonly call?: (args: unknown[]) => unknown;
  readonly tag?: unknown;
}

export interface UnpickleOptions {
  /** Allowed globals keyed `module name` (one space); matched exactly, so dotted tricks don't slip through. */
  globals?: ReadonlyMap<string, PyGlobal>;
  /** Resolves BINPERSID/PERSID ids (torch storages). Without it, persistent ids are an error. */
  persistentLoad?: (pid: unknown) => unknown;
}

export function globalKey(module: string, name: string): string {
  return `${module} ${name}`;
}

/** `collections.OrderedDict`, the one global every state_dict needs. */
export const ORDERED_DICT: PyGlobal = {
  module: 'collections',
  name: 'OrderedDict',
  call: (args) => {
    const d = new Map<unknown, unknown>();
    for (const pair of (args[0] as unknown[][] | undefined) ?? []) d.set(pair[0], pair[1]);
    return d;
  },
};

/** Python 3 pickles bytes at protocol 2 as `_codecs.encode(latin1_str, 'latin1')`. */
const CODECS_ENCODE: PyGlobal = {
  module: '_codecs',
  name: 'encode',
  call: ([s, enc]) => {
    if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) {
      throw new PickleError('_codecs.encode: only (str, "latin1") is supported');
    }
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  },
};

export function makeGlobals(list: readonly PyGlobal[]): Map<string, PyGlobal> {
  return new Map([ORDERED_DICT, CODECS_ENCODE, ...list].map((g) => [globalKey(g.module, g.name), g]));
}

const MARK = Symbol('mark');

/** Unpickle one pickle starting at `start`; returns the value and the offset just past its STOP opcode. */
export function unpickle(buf: Uint8Array, opts: UnpickleOptions = {}, start = 0): { value: unknown; end: number } {
  return new Unpickler(buf, start, opts).run();
}

class Unpickler {
  private pos: number;
  private readonly view: DataView;
  private readonly stack: unknown[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly globals: ReadonlyMap<string, PyGlobal>;

  constructor(private readonly buf: Uint8Array, start: number, private readonly opts: UnpickleOptions) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.globals = opts.globals ?? makeGlobals([]);
  }

  run(): { value: unknown; end: number } {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      if (op === 0x2e /* . STOP */) return { value: this.pop(), end: this.pos };
      try {
        this.step(op);
      } catch (e) {
        if (e instanceof PickleError) throw e;
        throw new PickleError(`bad pickle at byte ${at} (opcode 0x${op.toString(16)}): ${(e as Error).message}`);
      }
    }
  }

  // --- reading primitives; every read is bounds-checked so truncated files fail cleanly -----------------------
  private need(n: number): number {
    if (n < 0 || this.pos + n > this.buf.length) {
      throw new PickleError(`truncated: unexpected end of pickle data at byte ${this.buf.length} (needed ${n} bytes at ${this.pos})`);
    }
    const p = this.pos;
    this.pos += n;
    return p;
  }
  private u8(): number { return this.buf[this.need(1)]; }
  private u16(): number { return this.view.getUint16(this.need(2), true); }
  private u32(): number { return this.view.getUint32(this.need(4), true); }
  private i32(): number { return this.view.getInt32(this.need(4), true); }
  private u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError(`length ${v} at byte ${this.pos - 8} is absurd`);
    return Number(v);
  }
  private bytes(n: number): Uint8Array { const p = this.need(n); return this.buf.subarray(p, p + n); }
  /** A plain Uint8Array copy (Buffer#slice on readFileSync data would return a view into the file instead). */
  private copy(n: number): Uint8Array { return new Uint8Array(this.bytes(n)); }
  private utf8(n: number): string { return new TextDecoder('utf-8', { fatal: true }).decode(this.bytes(n)); }
  private latin1(n: number): string {
    // byte i → U+00i (true latin-1; TextDecoder's 'latin1' is windows-1252), in chunks so that long strings
    // don't overflow the argument stack of fromCharCode
    const b = this.bytes(n);
    let s = '';
    for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
    return s;
  }
  private line(): string {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleError(`truncated: unexpected end of pickle data at byte ${this.buf.length} (unterminated line)`);
    const s = this.latin1(end - this.pos);
    this.pos++;
    return s;
  }

  // --- stack ---------------------------------------------------------------------------------------------------
  private push(v: unknown): void { this.stack.push(v); }
  private pop(): unknown {
    if (this.stack.length === 0 || this.stack.length <= (this.marks.at(-1) ?? -1)) {
      throw new PickleError(`pickle stack underflow at byte ${this.pos - 1}`);
    }
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) throw new PickleError(`pickle stack underflow at byte ${this.pos - 1}`);
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) throw new PickleError(`pickle MARK missing at byte ${this.pos - 1}`);
    return this.stack.splice(m);
  }

  private resolve(module: string, name: string): PyGlobal {
    const g = this.globals.get(globalKey(module, name));
    if (!g) throw new UnsafePickleError(module, name);
    return g;
  }

  private callGlobal(f: unknown, args: unknown): unknown {
    if (!isPyGlobal(f) || !f.call) throw new PickleError(`cannot call ${describe(f)}`);
    if (!Array.isArray(args)) throw new PickleError(`arguments to ${f.module}.${f.name} are not a tuple`);
    return f.call(args);
  }

  private persistent(pid: unknown): unknown {
    if (!this.opts.persistentLoad) throw new PickleError('persistent id found but no persistent loader given');
    return this.opts.persistentLoad(pid);
  }

  private step(op: number): void {
    switch (op) {
      case 0x80: this.u8(); return;                                          // PROTO
      case 0x95: this.u64(); return;                                         // FRAME: framing is only a hint
      case 0x7d: this.push(new Map()); return;                              // } EMPTY_DICT
      case 0x5d: this.push([]); return;                                     // ] EMPTY_LIST
      case 0x29: this.push([]); return;                                     // ) EMPTY_TUPLE
      case 0x8f: this.push([]); return;                                     // EMPTY_SET (as a list)
      case 0x28: this.marks.push(this.stack.length); return;                // ( MARK
      case 0x85: this.push([this.pop()]); return;                           // TUPLE1
      case 0x86: { const b = this.pop(); this.push([this.pop(), b]); return; }         // TUPLE2
      case 0x87: { const c = this.pop(); const b = this.pop(); this.push([this.pop(), b, c]); return; } // TUPLE3
      case 0x74: this.push(this.popMark()); return;                         // t TUPLE
      case 0x6c: this.push(this.popMark()); return;                         // l LIST
      case 0x91: this.push(this.popMark()); return;                         // FROZENSET (as a list)
      case 0x64: this.push(toDict(this.popMark())); return;                 // d DICT
      case 0x58: this.push(this.utf8(this.u32())); return;                  // X BINUNICODE
      case 0x8c: this.push(this.utf8(this.u8())); return;                   // SHORT_BINUNICODE
      case 0x8d: this.push(this.utf8(this.u64())); return;                  // BINUNICODE8
      case 0x56: this.push(decodeRawUnicodeEscape(this.line())); return;    // V UNICODE (protocol 0)
      case 0x53: this.push(decodeStringLiteral(this.line())); return;       // S STRING (protocol 0, py2 str)
      case 0x55: this.push(this.latin1(this.u8())); return;                 // U SHORT_BINSTRING (py2 str)
      case 0x54: this.push(this.latin1(this.i32())); return;                // T BINSTRING
      case 0x43: this.push(this.copy(this.u8())); return;                   // C SHORT_BINBYTES
      case 0x42: this.push(this.copy(this.u32())); return;                  // B BINBYTES
      case 0x8e: case 0x96: this.push(this.copy(this.u64())); return;       // BINBYTES8, BYTEARRAY8
      case 0x4a: this.push(this.i32()); return;                             // J BININT
      case 0x4b: this.push(this.u8()); return;                              // K BININT1
      case 0x4d: this.push(this.u16()); return;                             // M BININT2
      case 0x8a: this.push(decodeLong(this.bytes(this.u8()))); return;      // LONG1
      case 0x8b: this.push(decodeLong(this.bytes(this.i32()))); return;     // LONG4
      case 0x49: this.push(parseIntLine(this.line())); return;              // I INT (protocol 0)
      case 0x4c: this.push(parseIntLine(this.line().replace(/L$/, ''))); return; // L LONG (protocol 0)
      case 0x46: this.push(Number.parseFloat(this.line())); return;         // F FLOAT (protocol 0)
      case 0x47: this.push(this.view.getFloat64(this.need(8), false)); return; // G BINFLOAT (big-endian)
      case 0x88: this.push(true); return;                                   // NEWTRUE
      case 0x89: this.push(false); return;                                  // NEWFALSE
      case 0x4e: this.push(null); return;                                   // N NONE
      case 0x71: this.memo.set(this.u8(), this.top()); return;              // q BINPUT
      case 0x72: this.memo.set(this.u32(), this.top()); return;             // r LONG_BINPUT
      case 0x70: this.memo.set(parseIntAsNumber(this.line()), this.top()); return; // p PUT
      case 0x94: this.memo.set(this.memo.size, this.top()); return;         // MEMOIZE
      case 0x68: this.push(this.memoGet(this.u8())); return;                // h BINGET
      case 0x6a: this.push(this.memoGet(this.u32())); return;               // j LONG_BINGET
      case 0x67: this.push(this.memoGet(parseIntAsNumber(this.line()))); return; // g GET
      case 0x30: this.pop(); return;                                        // 0 POP
      case 0x31: this.popMark(); return;                                    // 1 POP_MARK
      case 0x32: this.push(this.top()); return;                             // 2 DUP
      case 0x63: { const m = this.line(); this.push(this.resolve(m, this.line())); return; } // c GLOBAL
      case 0x93: this.stackGlobal(); return;                                // STACK_GLOBAL
      case 0x52: { const args = this.pop(); this.push(this.callGlobal(this.pop(), args)); return; } // R REDUCE
      case 0x81: { const args = this.pop(); this.push(this.callGlobal(this.pop(), args)); return; } // NEWOBJ
      case 0x92: this.newObjEx(); return;                                   // NEWOBJ_EX
      case 0x69: this.inst(); return;                                       // i INST
      case 0x6f: { const [cls, ...args] = this.popMark(); this.push(this.callGlobal(cls, args)); return; } // o OBJ
      case 0x62: this.build(this.pop()); return;                            // b BUILD
      case 0x73: { const v = this.pop(); const k = this.pop(); this.dictTarget().set(k, v); return; } // s SETITEM
      case 0x75: this.setItems(); return;                                   // u SETITEMS
      case 0x61: { const v = this.pop(); this.listTarget().push(v); return; } // a APPEND
      case 0x65: { const items = this.popMark(); this.listTarget().push(...items); return; } // e APPENDS
      case 0x90: { const items = this.popMark(); this.listTarget().push(...items); return; } // ADDITEMS
      case 0x51: this.push(this.persistent(this.pop())); return;            // Q BINPERSID
      case 0x50: this.push(this.persistent(this.line())); return;           // P PERSID
      case 0x82: case 0x83: case 0x84:                                      // EXT1/2/4: copyreg registry
        throw new UnsafePickleError('copyreg', `extension code at byte ${this.pos - 1}`, 'extension registry lookups are not allowed');
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16)} at byte ${this.pos - 1}`);
    }
  }

  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) throw new PickleError(`pickle memo key ${i} missing at byte ${this.pos}`);
    return this.memo.get(i);
  }

  private stackGlobal(): void {
    const name = this.pop();
    const module = this.pop();
    if (typeof module !== 'string' || typeof name !== 'string') {
      throw new PickleError(`STACK_GLOBAL needs two strings at byte ${this.pos - 1}`);
    }
    this.push(this.resolve(module, name));
  }

  private inst(): void {
    const module = this.line();
    const cls = this.resolve(module, this.line());
    this.push(this.callGlobal(cls, this.popMark()));
  }

  private newObjEx(): void {
    const kwargs = this.pop();
    const args = this.pop();
    const cls = this.pop();
    if (!(kwargs instanceof Map) || kwargs.size > 0) throw new PickleError('NEWOBJ_EX with keyword arguments is not supported');
    this.push(this.callGlobal(cls, args));
  }

  /** BUILD sets object state. Dicts (OrderedDict) carry `_metadata` here, which a state_dict reader can ignore. */
  private build(_state: unknown): void {
    const obj = this.top();
    if (obj instanceof Map) return;
    throw new PickleError(`BUILD on unsupported object ${describe(obj)} at byte ${this.pos - 1}`);
  }

  private setItems(): void {
    const items = this.popMark();
    if (items.length % 2) throw new PickleError(`SETITEMS with an odd number of items at byte ${this.pos - 1}`);
    const d = this.dictTarget();
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  }

  private dictTarget(): Map<unknown, unknown> {
    const d = this.top();
    if (!(d instanceof Map)) throw new PickleError(`SETITEM on ${describe(d)} at byte ${this.pos - 1}`);
    return d;
  }

  private listTarget(): unknown[] {
    const l = this.top();
    if (!Array.isArray(l)) throw new PickleError(`APPEND on ${describe(l)} at byte ${this.pos - 1}`);
    return l;
  }
}

function toDict(items: unknown[]): Map<unknown, unknown> {
  if (items.length % 2) throw new PickleError('DICT with an odd number of items');
  const d = new Map<unknown, unknown>();
  for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  return d;
}

/** LONG1/LONG4 payload: little-endian two's complement of any length. */
export function decodeLong(b: Uint8Array): number | bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Protocol 0 UNICODE: raw-unicode-escape, i.e. latin-1 text where only \\uXXXX and \\UXXXXXXXX are escapes
 *  (Python's pickler writes backslash, NUL and newlines as \\u escapes, so no other backslash is special). */
function decodeRawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_m, u4: string | undefined, u8: string | undefined) => {
    const cp = Number.parseInt(u4 ?? u8!, 16);
    if (cp > 0x10ffff) throw new PickleError(`bad \\U escape in pickle string: ${u8}`);
    return String.fromCodePoint(cp);
  });
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\n': '',
};

/** Protocol 0 STRING: a quoted Python 2 str literal (repr), decoded as Python's escape_decode does, to latin-1. */
function decodeStringLiteral(line: string): string {
  const q = line[0];
  if (line.length < 2 || (q !== "'" && q !== '"') || line[line.length - 1] !== q) {
    throw new PickleError(`STRING opcode argument must be quoted: ${JSON.stringify(line.slice(0, 40))}`);
  }
  const body = line.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== '\\') { out += c; continue; }
    const e = body[++i];
    if (e === undefined) throw new PickleError('STRING literal ends in a backslash');
    if (e in SIMPLE_ESCAPES) out += SIMPLE_ESCAPES[e];
    else if (e === 'x') {
      const h = body.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) throw new PickleError(`bad \\x escape in STRING literal: \\x${h}`);
      out += String.fromCharCode(Number.parseInt(h, 16));
      i += 2;
    } else if (/[0-7]/.test(e)) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out += String.fromCharCode(Number.parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else out += `\\${e}`; // unknown escapes stay as written, as in Python
  }
  return out;
}

function parseIntLine(s: string): number | bigint | boolean {
  if (s === '00') return false; // protocol 0 spells booleans as I00 / I01
  if (s === '01') return true;
  if (!/^[-+]?\d+$/.test(s)) throw new PickleError(`bad integer literal ${JSON.stringify(s)}`);
  const v = BigInt(s);
  return Number.isSafeInteger(Number(v)) ? Number(v) : v;
}

function parseIntAsNumber(s: string): number {
  const v = parseIntLine(s);
  if (typeof v !== 'number') throw new PickleError(`bad memo index ${JSON.stringify(s)}`);
  return v;
}

export function isPyGlobal(v: unknown): v is PyGlobal {
  return typeof v === 'object' && v !== null && 'module' in v && 'name' in v && !(v instanceof Map);
}

function describe(v: unknown): string {
  if (isPyGlobal(v)) return `${v.module}.${v.name}`;
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'a list/tuple';
  if (v instanceof Map) return 'a dict';
  return typeof v;
}

// ---------------------------------------------------------------------------------------------------------------
// Writer: just the opcodes torch.save emits at protocol 2, so our encoders produce the same structure.

export class PickleWriter {
  private chunks: number[] = [];
  private readonly globalMemo = new Map<string, number>();
  private memoCount = 0;

  proto(v = 2): this { return this.op(0x80, v); }
  stop(): this { return this.op(0x2e); }
  mark(): this { return this.op(0x28); }
  emptyTuple(): this { return this.op(0x29); }
  emptyDict(): this { return this.op(0x7d); }
  emptyList(): this { return this.op(0x5d); }
  tuple(): this { return this.op(0x74); }
  tupleN(n: 1 | 2 | 3): this { return this.op(0x84 + n); }
  reduce(): this { return this.op(0x52); }
  build(): this { return this.op(0x62); }
  setItems(): this { return this.op(0x75); }
  appends(): this { return this.op(0x65); }
  binPersId(): this { return this.op(0x51); }
  none(): this { return this.op(0x4e); }
  bool(b: boolean): this { return this.op(b ? 0x88 : 0x89); }
  setItem(): this { return this.op(0x73); }

  /** GLOBAL, memoised like Python's pickler: the second use of the same global is a BINGET. */
  global(module: string, name: string): this {
    const key = globalKey(module, name);
    const m = this.globalMemo.get(key);
    if (m !== undefined) return this.get(m);
    this.op(0x63).raw(new TextEncoder().encode(`${module}\n${name}\n`));
    this.globalMemo.set(key, this.memoCount);
    return this.put();
  }

  int(v: number | bigint): this {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 256) return this.op(0x4b, v);
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 65536) return this.op(0x4d, v & 0xff, v >> 8);
    if (typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, v, true);
      return this.op(0x4a).raw(b);
    }
    return this.long(BigInt(v));
  }

  /** LONG1: minimal little-endian two's complement, like Python's encode_long. */
  long(v: bigint): this {
    const out: number[] = [];
    for (let x = v; v !== 0n;) {
      const byte = Number(x & 0xffn);
      out.push(byte);
      x >>= 8n; // arithmetic shift: negative numbers stay negative
      if ((x === 0n && !(byte & 0x80)) || (x === -1n && byte & 0x80)) break;
    }
    return this.op(0x8a, out.length).raw(Uint8Array.from(out));
  }

  str(s: string): this {
    const b = new TextEncoder().encode(s);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length, true);
    this.op(0x58).raw(len).raw(b);
    return this.put();
  }

  bytes(): Uint8Array { return Uint8Array.from(this.chunks); }

  /** BINPUT the top of the stack, as Python does after each container it builds. */
  memo(): this { return this.put(); }

  private put(): this {
    const i = this.memoCount++;
    if (i < 256) return this.op(0x71, i);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, i, true);
    return this.op(0x72).raw(b);
  }

  private get(i: number): this {
    if (i < 256) return this.op(0x68, i);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, i, true);
    return this.op(0x6a).raw(b);
  }

  private op(...b: number[]): this { for (const x of b) this.chunks.push(x); return this; }
  private raw(b: Uint8Array): this { for (const x of b) this.chunks.push(x); return this; }
}
