// Downloads that lose nothing. Each file streams into `<file>.part` while its SHA-256 is computed, is
// fsync'ed, checked (size, and digest where one is published) and only then renamed into place. A dropped
// connection keeps the `.part` and resumes with an HTTP Range request; a lock file per model makes a second
// concurrent download wait for the first and reuse its result instead of writing the same files.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  type FileRecord,
  type Manifest,
  entryPath,
  lockPath,
  modelsDir,
  readManifest,
  sha256File,
  verifyEntry,
  writeManifest,
} from './cache.ts';
import { type ModelSource, type RemoteFile, type ResolveOptions, resolveSources } from './registry.ts';

// ---------------------------------------------------------------------------------------------- errors

export type DownloadErrorKind = 'offline' | 'http' | 'checksum' | 'size' | 'interrupted' | 'protocol';

export class DownloadError extends Error {
  constructor(
    message: string,
    readonly kind: DownloadErrorKind,
    /** worth another attempt with the same `.part` (dropped connection, 5xx) */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'DownloadError';
  }
}

export class HttpStatusError extends DownloadError {
  constructor(readonly status: number, statusText: string, readonly url: string) {
    // 429 and 5xx are usually transient on CDNs; 4xx otherwise means the address is wrong.
    super(`server answered ${status} ${statusText} for ${url}`, 'http', status === 429 || status >= 500);
    this.name = 'HttpStatusError';
  }
}

const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN']);
const DROPPED_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Map low-level socket errors to the two cases a user can act on: offline, or a dropped connection. */
function classify(err: unknown, url: string): DownloadError {
  if (err instanceof DownloadError) return err;
  const e = err as NodeJS.ErrnoException;
  const host = new URL(url).host;
  if (e?.code && OFFLINE_CODES.has(e.code)) {
    return new DownloadError(`cannot reach ${host}: are you offline? (${e.code})`, 'offline');
  }
  if ((e?.code && DROPPED_CODES.has(e.code)) || /aborted|socket hang up|premature close/i.test(e?.message ?? '')) {
    return new DownloadError(`connection to ${host} was closed (${e.code ?? e.message})`, 'interrupted', true);
  }
  return new DownloadError(`download of ${url} failed: ${e?.message ?? String(err)}`, 'protocol');
}

// ------------------------------------------------------------------------------------------ one file

export interface Progress {
  file: string;
  url: string;
  /** bytes of the file on disk so far, resumed bytes included */
  received: number;
  /** full size, when the server said */
  total?: number;
  /** bytes already on disk when this attempt started (from an earlier, interrupted one) */
  resumedFrom: number;
}

export interface FetchOptions {
  expectedSize?: number;
  expectedSha256?: string;
  /** extra attempts after a dropped connection or a 5xx (default 4) */
  retries?: number;
  /** first retry delay, doubled each time up to 8 s (default 500 ms) */
  backoffMs?: number;
  /** give up on a connection that sends nothing for this long (default 30 s) */
  idleTimeoutMs?: number;
  onProgress?: (p: Progress) => void;
  onRetry?: (info: { url: string; attempt: number; delayMs: number; error: DownloadError }) => void;
}

export interface FetchResult extends FileRecord {
  path: string;
  /** bytes reused from a `.part` left by an earlier run */
  resumedFrom: number;
  attempts: number;
}

/** What we remember beside a `.part` so a resume only appends to bytes of the same remote file. */
interface PartMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

/** Fetch `url` into `dest` (atomically), resuming `dest.part` if present. */
export async function fetchToFile(url: string, dest: string, opts: FetchOptions = {}): Promise<FetchResult> {
  const retries = opts.retries ?? 4;
  const part = `${dest}.part`;
  let firstOffset: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const got = await attemptOnce(url, part, opts);
      firstOffset ??= got.resumedFrom;
      await finish(part, dest, got, opts);
      return { path: dest, size: got.size, sha256: got.sha256, url, resumedFrom: firstOffset, attempts: attempt };
    } catch (err) {
      const error = classify(err, url);
      firstOffset ??= 0;
      if (!error.retryable || attempt > retries) throw finalError(error, part, attempt);
      const delayMs = Math.min((opts.backoffMs ?? 500) * 2 ** (attempt - 1), 8000);
      opts.onRetry?.({ url, attempt, delayMs, error });
      await sleep(delayMs);
    }
  }
}

async function finalError(error: DownloadError, part: string, attempts: number): Promise<DownloadError> {
  if (error.kind !== 'interrupted') return error;
  const kept = (await fileSize(part)) ?? 0;
  const msg = `${error.message} after ${attempts} attempts; ${kept} bytes kept in ${part}, run the command again to resume`;
  return new DownloadError(msg, 'interrupted', true);
}

interface Attempt {
  size: number;
  sha256: string;
  resumedFrom: number;
}

async function attemptOnce(url: string, part: string, opts: FetchOptions): Promise<Attempt> {
  const meta = await readPartMeta(part, url);
  let offset = meta ? ((await fileSize(part)) ?? 0) : 0;
  if (!meta) await discardPart(part);
  const res = await request(url, rangeHeaders(offset, meta), opts.idleTimeoutMs ?? 30_000);
  const plan = await planFromResponse(res, url, offset, meta);
  if (plan.restart) {
    offset = 0;
    await discardPart(part);
  }
  checkAnnouncedSize(plan.total, opts.expectedSize, url);
  await writePartMeta(part, { url, etag: header(res, 'etag'), lastModified: header(res, 'last-modified'), total: plan.total });
  const hash = await hashPrefix(part, offset);
  if (plan.alreadyComplete) return { size: offset, sha256: hash.digest('hex'), resumedFrom: offset };
  const size = await appendBody(res, part, hash, { url, offset, total: plan.total, onProgress: opts.onProgress });
  if (plan.total !== undefined && size < plan.total) {
    throw new DownloadError(`connection to ${new URL(url).host} was closed at ${size} of ${plan.total} bytes`, 'interrupted', true);
  }
  return { size, sha256: hash.digest('hex'), resumedFrom: offset };
}

function rangeHeaders(offset: number, meta: PartMeta | undefined): Record<string, string> {
  if (offset === 0) return {};
  const h: Record<string, string> = { range: `bytes=${offset}-` };
  // If-Range makes the server send the whole (new) file instead of splicing a changed file onto old bytes.
  const validator = meta?.etag && !meta.etag.startsWith('W/') ? meta.etag : meta?.lastModified;
  if (validator) h['if-range'] = validator;
  return h;
}

interface Plan {
  total?: number;
  restart: boolean;
  alreadyComplete: boolean;
}

/** Decide, from the status line, whether the body continues our `.part`, replaces it, or is not needed. */
async function planFromResponse(res: http.IncomingMessage, url: string, offset: number, meta?: PartMeta): Promise<Plan> {
  const status = res.statusCode ?? 0;
  const length = numberHeader(res, 'content-length');
  if (status === 200) return { total: length, restart: offset > 0, alreadyComplete: false };
  if (status === 206) {
    const cr = parseContentRange(header(res, 'content-range'));
    if (cr?.start === offset) return { total: cr.total ?? (length !== undefined ? offset + length : meta?.total), restart: false, alreadyComplete: false };
    res.destroy();
    await sleep(0);
    throw new DownloadError(`server sent an unexpected range (${header(res, 'content-range')}); starting over`, 'interrupted', true);
  }
  res.resume(); // the body of an error or 416 is of no use; drain it so the socket closes cleanly
  if (status === 416) {
    // Our `.part` already has every byte (e.g. a crash between the last write and the rename) or is bogus.
    const total = parseContentRange(header(res, 'content-range'))?.total ?? meta?.total;
    if (total !== undefined && total === offset) return { total, restart: false, alreadyComplete: true };
    return { total: undefined, restart: true, alreadyComplete: false, ...(await restartAfter416()) };
  }
  if (status >= 400) throw new HttpStatusError(status, res.statusMessage ?? '', url);
  throw new DownloadError(`server answered ${status} ${res.statusMessage ?? ''} for ${url}, expected 200 or 206`, 'protocol');
}

async function restartAfter416(): Promise<never> {
  throw new DownloadError('server refused the resume range; starting over', 'interrupted', true);
}

function checkAnnouncedSize(total: number | undefined, expected: number | undefined, url: string): void {
  if (total !== undefined && expected !== undefined && total !== expected) {
    throw new DownloadError(`${url} is ${total} bytes, expected ${expected}: wrong file or changed upstream`, 'size');
  }
}

/** Stream the body onto the end of `.part`, hashing exactly the bytes that reach the disk. */
async function appendBody(
  res: http.IncomingMessage,
  part: string,
  hash: Hash,
  p: { url: string; offset: number; total?: number; onProgress?: FetchOptions['onProgress'] },
): Promise<number> {
  const fh = await open(part, 'a');
  let received = p.offset;
  const report = (): void => p.onProgress?.({ file: path.basename(part, '.part'), url: p.url, received, total: p.total, resumedFrom: p.offset });
  try {
    report();
    for await (const chunk of res as AsyncIterable<Buffer>) {
      await fh.write(chunk);
      hash.update(chunk);
      received += chunk.length;
      report();
    }
    return received;
  } finally {
    await fh.sync().catch(() => undefined); // durable before any rename; harmless on an interrupted attempt
    await fh.close();
  }
}

/** Check the finished `.part` and move it into place; a bad file is deleted so it can never be used. */
async function finish(part: string, dest: string, got: Attempt, opts: FetchOptions): Promise<void> {
  const problem =
    opts.expectedSize !== undefined && got.size !== opts.expectedSize
      ? `size ${got.size}, expected ${opts.expectedSize}`
      : opts.expectedSha256 && got.sha256 !== opts.expectedSha256.toLowerCase()
        ? `sha256 ${got.sha256}, expected ${opts.expectedSha256.toLowerCase()}`
        : undefined;
  if (problem) {
    await discardPart(part);
    const kind = problem.startsWith('size') ? 'size' : 'checksum';
    throw new DownloadError(`checksum mismatch for ${path.basename(dest)} (${problem}); the download was deleted`, kind);
  }
  await rename(part, dest);
  await rm(metaPath(part), { force: true });
}

// ------------------------------------------------------------------------------------------- HTTP

const MAX_REDIRECTS = 5;

/** GET with redirects followed (the Hub redirects to its CDN); Range/If-Range survive the redirect. */
async function request(url: string, headers: Record<string, string>, idleTimeoutMs: number): Promise<http.IncomingMessage> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await get(current, headers, idleTimeoutMs);
    const location = res.headers.location;
    if (!location || ![301, 302, 303, 307, 308].includes(res.statusCode ?? 0)) return res;
    res.resume();
    current = new URL(location, current).href;
  }
  throw new DownloadError(`too many redirects from ${url}`, 'protocol');
}

function get(url: string, headers: Record<string, string>, idleTimeoutMs: number): Promise<http.IncomingMessage> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new DownloadError(`unsupported address ${url}`, 'protocol');
  const client = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    // agent:false: one connection per request, so nothing lingers after the download (no keep-alive pool).
    const req = client.get(u, { headers: { 'user-agent': 'channel-awareness', ...headers }, agent: false }, resolve);
    req.on('error', (err) => reject(classify(err, url)));
    req.setTimeout(idleTimeoutMs, () => {
      req.destroy(new DownloadError(`no data from ${u.host} for ${idleTimeoutMs / 1000} s`, 'interrupted', true));
    });
  });
}

function header(res: http.IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function numberHeader(res: http.IncomingMessage, name: string): number | undefined {
  const v = header(res, name);
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

// `bytes 100-199/200` → {start:100, total:200}; `bytes */200` (unknown range) → {total:200}.
export function parseContentRange(v: string | undefined): { start?: number; total?: number } | undefined {
  const m = v?.match(/^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i);
  if (!m) return undefined;
  return { start: m[1] !== undefined ? Number(m[1]) : undefined, total: m[2] !== '*' ? Number(m[2]) : undefined };
}

// --------------------------------------------------------------------------------------- .part files

function metaPath(part: string): string {
  return `${part}.json`;
}

/** The `.part`'s metadata if it belongs to `url`; a `.part` from another address is useless. */
async function readPartMeta(part: string, url: string): Promise<PartMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(metaPath(part), 'utf8')) as PartMeta;
    return meta.url === url ? meta : undefined;
  } catch {
    return undefined;
  }
}

async function writePartMeta(part: string, meta: PartMeta): Promise<void> {
  await writeFile(metaPath(part), JSON.stringify(meta));
}

async function discardPart(part: string): Promise<void> {
  await rm(part, { force: true });
  await rm(metaPath(part), { force: true });
}

/** A hash primed with the first `length` bytes already on disk, so a resumed file is still fully checked. */
async function hashPrefix(part: string, length: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (length > 0) await pipeline(createReadStream(part, { start: 0, end: length - 1 }), hash, { end: false });
  return hash;
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------- lock

export interface LockOptions {
  /** how often a waiter looks again (default 250 ms) */
  pollMs?: number;
  /** a lock not refreshed for this long belongs to a dead process on some host (default 60 s) */
  staleMs?: number;
  onWait?: () => void;
}

interface LockInfo {
  pid: number;
  host: string;
  startedAt: string;
}

/**
 * Run `fn` holding an exclusive lock file (created with O_EXCL, so exactly one process wins). The holder
 * touches the file periodically; waiters break locks whose process is gone or that stopped being touched.
 */
export async function withLock<T>(file: string, fn: (waited: boolean) => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const staleMs = opts.staleMs ?? 60_000;
  const waited = await acquire(file, opts.pollMs ?? 250, staleMs, opts.onWait);
  const beat = setInterval(() => void utimes(file, new Date(), new Date()).catch(() => undefined), staleMs / 4);
  beat.unref();
  try {
    return await fn(waited);
  } finally {
    clearInterval(beat);
    await unlink(file).catch(() => undefined);
  }
}

async function acquire(file: string, pollMs: number, staleMs: number, onWait?: () => void): Promise<boolean> {
  let waited = false;
  for (;;) {
    try {
      const fh = await open(file, 'wx');
      const info: LockInfo = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() };
      await fh.writeFile(JSON.stringify(info));
      await fh.close();
      return waited;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await isStale(file, staleMs)) {
      // A crashed holder. Two waiters may both remove it; O_EXCL above still lets only one of them in.
      await unlink(file).catch(() => undefined);
      continue;
    }
    if (!waited) onWait?.();
    waited = true;
    await sleep(pollMs);
  }
}

async function isStale(file: string, staleMs: number): Promise<boolean> {
  try {
    const [st, text] = await Promise.all([stat(file), readFile(file, 'utf8')]);
    if (Date.now() - st.mtimeMs > staleMs) return true;
    const info = JSON.parse(text) as LockInfo;
    return info.host === os.hostname() && !processAlive(info.pid);
  } catch {
    return false; // just released, or being written right now: look again later
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------------------- one model

export type DownloadEvent =
  | { type: 'reused'; name: string; path: string }
  | { type: 'waiting'; name: string; lock: string }
  | { type: 'fallback'; name: string; error: string }
  | { type: 'file'; name: string; file: string; url: string }
  | { type: 'kept'; name: string; file: string }
  | { type: 'retry'; name: string; url: string; attempt: number; delayMs: number; error: string };

export interface DownloadModelOptions extends ResolveOptions, Pick<FetchOptions, 'retries' | 'backoffMs' | 'idleTimeoutMs' | 'onProgress'> {
  /** fetch every file again even if the entry verifies */
  force?: boolean;
  onEvent?: (e: DownloadEvent) => void;
  lock?: Omit<LockOptions, 'onWait'>;
}

export interface DownloadModelResult {
  name: string;
  path: string;
  /** the entry was already complete and verified; nothing was fetched */
  reused: boolean;
  source?: ModelSource;
  manifest: Manifest;
}

/** Download a model (known name, URL or Hub owner/repo) into the cache, or reuse a verified entry. */
export async function downloadModel(spec: string, opts: DownloadModelOptions = {}): Promise<DownloadModelResult> {
  const sources = resolveSources(spec, opts);
  const name = sources[0].name;
  await mkdir(modelsDir(), { recursive: true });
  const onWait = (): void => opts.onEvent?.({ type: 'waiting', name, lock: lockPath(name) });
  return withLock(lockPath(name), async (waited) => {
    if (!opts.force) {
      // Someone else just wrote it (we waited): sizes suffice. Otherwise rehash, so corruption is caught.
      const check = await verifyEntry(name, { deep: !waited });
      if (check.ok) {
        opts.onEvent?.({ type: 'reused', name, path: check.path });
        return { name, path: check.path, reused: true, manifest: readManifest(check.path)! };
      }
    }
    return fetchFromSources(sources, opts);
  }, { ...opts.lock, onWait });
}

/** Try each source in turn; only "not there" answers (403/404/410) move on to the next one. */
async function fetchFromSources(sources: ModelSource[], opts: DownloadModelOptions): Promise<DownloadModelResult> {
  for (let i = 0; ; i++) {
    try {
      return await fetchEntry(sources[i], opts);
    } catch (err) {
      const missing = err instanceof HttpStatusError && [403, 404, 410].includes(err.status);
      if (!missing || i === sources.length - 1) throw err;
      opts.onEvent?.({ type: 'fallback', name: sources[i].name, error: (err as Error).message });
    }
  }
}

async function fetchEntry(src: ModelSource, opts: DownloadModelOptions): Promise<DownloadModelResult> {
  const dir = entryPath(src.name);
  await mkdir(dir, { recursive: true });
  const old = readManifest(dir);
  const manifest: Manifest = { name: src.name, sources: src.files.map((f) => f.url), files: {}, complete: false, updatedAt: '' };
  // Invalidate first: from here until the end, readers must not trust this entry.
  await saveManifest(dir, manifest);
  for (const file of src.files) {
    const kept = !opts.force && (await keepable(dir, file, old?.files[file.name]));
    if (kept) opts.onEvent?.({ type: 'kept', name: src.name, file: file.name });
    manifest.files[file.name] = kept ? old!.files[file.name] : await fetchFile(dir, src.name, file, opts);
    await saveManifest(dir, manifest);
  }
  manifest.complete = true;
  await saveManifest(dir, manifest);
  return { name: src.name, path: dir, reused: false, source: src, manifest };
}

/** A file from an earlier, partial run can stay if it came from the same address and still hashes right. */
async function keepable(dir: string, file: RemoteFile, rec: FileRecord | undefined): Promise<boolean> {
  if (!rec || rec.url !== file.url || (file.sha256 && file.sha256 !== rec.sha256)) return false;
  const target = path.join(dir, file.name);
  if ((await fileSize(target)) !== rec.size) return false;
  return (await sha256File(target)) === rec.sha256;
}

async function fetchFile(dir: string, name: string, file: RemoteFile, opts: DownloadModelOptions): Promise<FileRecord> {
  const dest = path.join(dir, file.name);
  await rm(dest, { force: true }); // a stale or corrupt copy must not survive a failed re-download
  if (opts.force) await discardPart(`${dest}.part`);
  opts.onEvent?.({ type: 'file', name, file: file.name, url: file.url });
  const got = await fetchToFile(file.url, dest, {
    expectedSize: file.size,
    expectedSha256: file.sha256,
    retries: opts.retries,
    backoffMs: opts.backoffMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    onProgress: opts.onProgress,
    onRetry: (r) => opts.onEvent?.({ type: 'retry', name, url: r.url, attempt: r.attempt, delayMs: r.delayMs, error: r.error.message }),
  });
  return { size: got.size, sha256: got.sha256, url: file.url };
}

async function saveManifest(dir: string, m: Manifest): Promise<void> {
  m.updatedAt = new Date().toISOString();
  await writeManifest(dir, m);
}
