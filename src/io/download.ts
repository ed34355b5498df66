// Downloads that lose nothing. Each file streams into `<file>.part` while its SHA-256 is computed, is
// fsync'ed, checked (size, and digest where one is published) and only then renamed into place. A dropped
// connection keeps the `.part` and resumes with an HTTP Range request; a lock file per model makes a second
// concurrent download wait for the first and reuse its result instead of writing the same files. A model is
// assembled in a staging folder and renamed into the cache only when every file is verified.
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import {
  type FileRecord,
  type Manifest,
  type VerifyResult,
  MANIFEST_FILE,
  entryPath,
  lockPath,
  readManifest,
  sha256File,
  stagingPath,
  stagingRoot,
  trashRoot,
  verifyEntry,
  writeManifest,
} from './cache.ts';
import { type ModelSource, type RemoteFile, type ResolveOptions, assertEntryName, resolveSources } from './registry.ts';

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
    super(`server answered ${status}${statusText ? ` ${statusText}` : ''} for ${url}`, 'http', status === 429 || status >= 500);
    this.name = 'HttpStatusError';
  }
}

const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN', 'EADDRNOTAVAIL']);
const DROPPED_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Map low-level socket errors to the two cases a user can act on: offline, or a dropped connection. */
function classify(err: unknown, url: string): DownloadError {
  if (err instanceof DownloadError) return err;
  const e = err as NodeJS.ErrnoException;
  const host = new URL(url).host;
  if (e?.code && OFFLINE_CODES.has(e.code)) {
    const what = e.code === 'ECONNREFUSED' ? 'connection refused' : e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? 'name lookup failed' : 'network unreachable';
    return new DownloadError(`cannot reach ${host} (${what}, ${e.code}): are you offline? Check the network or the address`, 'offline');
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

export interface FetchResult {
  path: string;
  url: string;
  size: number;
  sha256: string;
  /** the digest was checked against a published one (ours, or the Hub's Git-LFS SHA-256) */
  pinned: boolean;
  /** bytes reused from a `.part` left by an earlier attempt or run */
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
  let restartedAfterBadResume = false;
  for (let attempt = 1; ; attempt++) {
    let got: Attempt | undefined;
    try {
      got = await attemptOnce(url, part, opts);
      firstOffset ??= got.resumedFrom;
      await finish(part, dest, got);
      return { path: dest, url, size: got.size, sha256: got.sha256, pinned: !!got.expectedSha256, resumedFrom: firstOffset, attempts: attempt };
    } catch (err) {
      const error = classify(err, url);
      firstOffset ??= 0;
      // Bytes spliced from an earlier run are the one suspect a full fetch can clear: try once from zero.
      if ((error.kind === 'checksum' || error.kind === 'size') && got && got.resumedFrom > 0 && !restartedAfterBadResume) {
        restartedAfterBadResume = true;
        firstOffset = 0;
        continue;
      }
      // A wrong address or a different file upstream: the `.part` can never be completed.
      if ((error.kind === 'http' && !error.retryable) || error.kind === 'size' || error.kind === 'checksum') await discardPart(part);
      if (!error.retryable || attempt > retries) throw await finalError(error, part, attempt);
      const delayMs = Math.min((opts.backoffMs ?? 500) * 2 ** (attempt - 1), 8000);
      opts.onRetry?.({ url, attempt, delayMs, error });
      await sleep(delayMs);
    }
  }
}

async function finalError(error: DownloadError, part: string, attempts: number): Promise<DownloadError> {
  if (error.kind !== 'interrupted') return error;
  const kept = (await fileSize(part)) ?? 0;
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return new DownloadError(`${error.message}${tries}; ${kept} bytes are kept, run the command again to resume`, 'interrupted', true);
}

interface Attempt {
  size: number;
  sha256: string;
  resumedFrom: number;
  expectedSha256?: string;
  expectedSize?: number;
}

async function attemptOnce(url: string, part: string, opts: FetchOptions): Promise<Attempt> {
  const meta = await readPartMeta(part, url);
  let offset = meta ? ((await fileSize(part)) ?? 0) : 0;
  if (!meta) await discardPart(part);
  const { res, linked } = await request(url, rangeHeaders(offset, meta), opts.idleTimeoutMs ?? 30_000);
  try {
    const expectedSha256 = opts.expectedSha256?.toLowerCase() ?? linked.sha256;
    const expectedSize = opts.expectedSize ?? linked.size;
    const plan = await planFromResponse(res, url, offset, meta, part);
    if (plan.restart) {
      offset = 0;
      await discardPart(part);
    }
    checkAnnouncedSize(plan.total, expectedSize, url);
    await writePartMeta(part, { url, etag: header(res, 'etag'), lastModified: header(res, 'last-modified'), total: plan.total });
    const hash = await hashPrefix(part, offset);
    const done = (size: number): Attempt => ({ size, sha256: hash.digest('hex'), resumedFrom: offset, expectedSha256, expectedSize });
    if (plan.alreadyComplete) return done(offset);
    const size = await appendBody(res, part, hash, { url, offset, total: plan.total, onProgress: opts.onProgress });
    if (plan.total !== undefined && size < plan.total) {
      throw new DownloadError(`connection to ${new URL(url).host} was closed at ${size} of ${plan.total} bytes`, 'interrupted', true);
    }
    return done(size);
  } finally {
    res.destroy(); // no-op after a full read; otherwise it frees the socket of an abandoned body
  }
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
async function planFromResponse(res: http.IncomingMessage, url: string, offset: number, meta: PartMeta | undefined, part: string): Promise<Plan> {
  const status = res.statusCode ?? 0;
  const length = numberHeader(res, 'content-length');
  if (status === 200) return { total: length, restart: offset > 0, alreadyComplete: false };
  if (status === 206) {
    const cr = parseContentRange(header(res, 'content-range'));
    if (offset > 0 && cr?.start === offset) {
      return { total: cr.total ?? (length !== undefined ? offset + length : meta?.total), restart: false, alreadyComplete: false };
    }
    // Not the bytes we asked for: asking again would get the same answer, so the next attempt starts at 0.
    res.destroy();
    await discardPart(part);
    throw new DownloadError(`server sent an unexpected range (${header(res, 'content-range') ?? 'none'}); starting over`, 'interrupted', true);
  }
  res.resume(); // the body of an error or 416 is of no use; drain it so the socket closes cleanly
  if (status === 416 && offset > 0) {
    // Our `.part` already has every byte (a crash between the last write and the rename) or is bogus.
    const total = parseContentRange(header(res, 'content-range'))?.total ?? meta?.total;
    if (total !== undefined && total === offset) return { total, restart: false, alreadyComplete: true };
    await discardPart(part);
    throw new DownloadError('server refused the resume range; starting over', 'interrupted', true);
  }
  if (status >= 400) throw new HttpStatusError(status, res.statusMessage ?? '', url);
  throw new DownloadError(`server answered ${status} ${res.statusMessage ?? ''} for ${url}, expected 200 or 206`, 'protocol');
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
async function finish(part: string, dest: string, got: Attempt): Promise<void> {
  const file = path.basename(dest);
  let problem: { kind: 'size' | 'checksum'; text: string } | undefined;
  if (got.expectedSize !== undefined && got.size !== got.expectedSize) problem = { kind: 'size', text: `${got.size} bytes, expected ${got.expectedSize}` };
  else if (got.expectedSha256 && got.sha256 !== got.expectedSha256) problem = { kind: 'checksum', text: `sha256 ${got.sha256}, expected ${got.expectedSha256}` };
  if (problem) {
    await discardPart(part);
    const what = problem.kind === 'size' ? 'size mismatch' : 'checksum mismatch';
    throw new DownloadError(`${what} for ${file} (${problem.text}); the download was deleted`, problem.kind);
  }
  await rename(part, dest);
  await rm(metaPath(part), { force: true });
}

// ------------------------------------------------------------------------------------------- HTTP

const MAX_REDIRECTS = 5;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What a redirect hop said about the file: the Hub answers LFS files with their SHA-256 and size. */
interface Linked {
  sha256?: string;
  size?: number;
}

/** GET with redirects followed (the Hub redirects to its CDN); Range/If-Range survive the redirect. */
async function request(url: string, headers: Record<string, string>, idleTimeoutMs: number): Promise<{ res: http.IncomingMessage; linked: Linked }> {
  let current = url;
  const linked: Linked = {};
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await get(current, headers, idleTimeoutMs);
    // `X-Linked-Etag` is the Git-LFS object id (its SHA-256) of the file behind a Hub redirect.
    const etag = header(res, 'x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
    if (etag && SHA256_HEX.test(etag)) linked.sha256 = etag;
    linked.size ??= numberHeader(res, 'x-linked-size');
    const location = res.headers.location;
    if (!location || ![301, 302, 303, 307, 308].includes(res.statusCode ?? 0)) return { res, linked };
    res.resume();
    const next = new URL(location, current);
    if (new URL(current).protocol === 'https:' && next.protocol !== 'https:') {
      throw new DownloadError(`${current} redirects to ${next.href}: refusing to leave https`, 'protocol');
    }
    current = next.href;
  }
  throw new DownloadError(`too many redirects from ${url}`, 'protocol');
}

function get(url: string, headers: Record<string, string>, idleTimeoutMs: number): Promise<http.IncomingMessage> {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new DownloadError(`unsupported address ${url}`, 'protocol');
  const client = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    // agent:false: one connection per request, so nothing lingers after the download (no keep-alive pool).
    // `timeout` is a socket timeout armed before the connect, so it covers a host that never answers
    // as well as a body that stalls half-way.
    const req = client.get(u, { headers: { 'user-agent': 'channel-awareness', ...headers }, agent: false, timeout: idleTimeoutMs }, resolve);
    req.on('error', (err) => reject(classify(err, url)));
    req.on('timeout', () => {
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

// `bytes 100-199/200` → {start:100, total:200}; `bytes */200` (unsatisfiable range) → {total:200}.
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
  if (length > 0) for await (const chunk of createReadStream(part, { start: 0, end: length - 1 })) hash.update(chunk as Buffer);
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
  token: string;
  startedAt: string;
}

/**
 * Run `fn` holding an exclusive lock file (created with O_EXCL, so exactly one process wins). The holder
 * touches the file periodically; waiters break locks whose process is gone or that stopped being touched.
 */
export async function withLock<T>(file: string, fn: (waited: boolean) => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const staleMs = opts.staleMs ?? 60_000;
  const token = randomUUID();
  const waited = await acquire(file, token, opts.pollMs ?? 250, staleMs, opts.onWait);
  const beat = setInterval(() => void utimes(file, new Date(), new Date()).catch(() => undefined), staleMs / 4);
  beat.unref();
  try {
    return await fn(waited);
  } finally {
    clearInterval(beat);
    await release(file, token);
  }
}

async function acquire(file: string, token: string, pollMs: number, staleMs: number, onWait?: () => void): Promise<boolean> {
  let waited = false;
  for (;;) {
    const info: LockInfo = { pid: process.pid, host: os.hostname(), token, startedAt: new Date().toISOString() };
    try {
      await writeFile(file, JSON.stringify(info), { flag: 'wx' });
      return waited;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const stale = await staleLock(file, staleMs);
    if (stale !== undefined) {
      await breakLock(file, stale, token);
      continue;
    }
    if (!waited) onWait?.();
    waited = true;
    await sleep(pollMs);
  }
}

/** The lock's text if it is stale (holder dead, or not touched for `staleMs`), else undefined. */
async function staleLock(file: string, staleMs: number): Promise<string | undefined> {
  try {
    const [st, text] = await Promise.all([stat(file), readFile(file, 'utf8')]);
    if (Date.now() - st.mtimeMs > staleMs) return text;
    const info = JSON.parse(text) as LockInfo;
    return info.host === os.hostname() && !processAlive(info.pid) ? text : undefined;
  } catch {
    return undefined; // just released, or being written right now: look again later
  }
}

/**
 * Move the stale lock aside rather than unlink it: if another waiter replaced it in the meantime, what we
 * moved is a live lock, and we put it back.
 */
async function breakLock(file: string, staleText: string, token: string): Promise<void> {
  const aside = `${file}.stale-${token}`;
  try {
    await rename(file, aside);
  } catch {
    return; // someone else broke or released it
  }
  const moved = await readFile(aside, 'utf8').catch(() => '');
  if (moved !== staleText) await link(aside, file).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

async function release(file: string, token: string): Promise<void> {
  try {
    const info = JSON.parse(await readFile(file, 'utf8')) as LockInfo;
    if (info.token === token) await unlink(file); // never remove a lock someone took after ours was broken
  } catch {
    // already gone
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
  | { type: 'waiting'; name: string; lock: string }
  | { type: 'reused'; name: string; path: string; rehashed: boolean }
  | { type: 'damaged'; name: string; path: string; problems: string[] }
  | { type: 'fallback'; name: string; error: string; from: ModelSource; next: ModelSource }
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
  /** the source the files came from (absent when reused) */
  source?: ModelSource;
  manifest: Manifest;
}

/** Download a model (known name, URL or Hub owner/repo) into the cache, or reuse a verified entry. */
export async function downloadModel(spec: string, opts: DownloadModelOptions = {}): Promise<DownloadModelResult> {
  const sources = resolveOrRecalled(spec, opts);
  const name = sources[0].name;
  await mkdir(stagingRoot(), { recursive: true });
  const onWait = (): void => opts.onEvent?.({ type: 'waiting', name, lock: lockPath(name) });
  return withLock(lockPath(name), async (waited) => {
    await clearTrash(name);
    let bad: string[] = [];
    if (!opts.force) {
      // Someone else just wrote it (we waited): the cheap check suffices. Otherwise hash, so corruption is caught.
      const check = await verifyEntry(name, { deep: !waited });
      if (check.ok) {
        if (check.rehashed.length) await refreshMtimes(check);
        opts.onEvent?.({ type: 'reused', name, path: check.path, rehashed: check.rehashed.length > 0 });
        return { name, path: check.path, reused: true, manifest: readManifest(check.path)! };
      }
      if (check.status === 'damaged' || check.status === 'incomplete') {
        opts.onEvent?.({ type: 'damaged', name, path: check.path, problems: check.problems });
        await invalidate(check);
        bad = check.bad;
      }
    }
    return fetchFromSources(sources, bad, opts);
  }, { ...opts.lock, onWait });
}

/**
 * Sources for a spec; a name that is neither known nor an address may be an entry made earlier with
 * `--name`, whose manifest (complete, or in staging) remembers where its files come from.
 */
function resolveOrRecalled(spec: string, opts: DownloadModelOptions): ModelSource[] {
  try {
    return resolveSources(spec, opts);
  } catch (err) {
    let name: string;
    try {
      name = assertEntryName(spec);
    } catch {
      throw err;
    }
    const source = (readManifest(entryPath(name)) ?? readManifest(stagingPath(name)))?.source;
    if (!source) throw err;
    return [{ name, kind: source.kind, files: source.files }];
  }
}

/**
 * Try each source in turn; only "not there" answers (403/404/410) move on, and only to a source that
 * does not need the missing file too. Sources of one model share a staging folder, so a config fetched
 * for the first is kept for the next.
 */
async function fetchFromSources(sources: ModelSource[], bad: string[], opts: DownloadModelOptions): Promise<DownloadModelResult> {
  for (let i = 0; ; ) {
    try {
      return await fetchEntry(sources[i], bad, opts);
    } catch (err) {
      const missing = err instanceof HttpStatusError && [403, 404, 410].includes(err.status) ? err.url : undefined;
      const next = missing ? sources.findIndex((s, j) => j > i && !s.files.some((f) => f.url === missing)) : -1;
      if (next < 0) {
        await tidyFailedStage(stagingPath(sources[i].name));
        throw err;
      }
      opts.onEvent?.({ type: 'fallback', name: sources[i].name, error: (err as Error).message, from: sources[i], next: sources[next] });
      i = next;
    }
  }
}

async function fetchEntry(src: ModelSource, bad: string[], opts: DownloadModelOptions): Promise<DownloadModelResult> {
  const stage = stagingPath(src.name);
  const entry = entryPath(src.name);
  await mkdir(stage, { recursive: true });
  const staged = readManifest(stage); // files finished by an earlier, interrupted run
  const current = readManifest(entry); // an entry being replaced may still hold good files
  const source = { kind: src.kind, files: src.files };
  const manifest: Manifest = { version: 1, name: src.name, kind: src.kind, source, files: {}, complete: false, updatedAt: '' };
  for (const file of src.files) {
    let rec = opts.force ? undefined : await reuse(file, stage, staged, bad.includes(file.name) ? undefined : current, entry);
    if (rec) opts.onEvent?.({ type: 'kept', name: src.name, file: file.name });
    else rec = await fetchFile(stage, src.name, file, opts);
    manifest.files[file.name] = rec;
    await writeManifest(stage, manifest);
  }
  await pruneStage(stage, src.files);
  for (const [f, rec] of Object.entries(manifest.files)) rec.mtimeMs = (await stat(path.join(stage, f))).mtimeMs;
  manifest.complete = true;
  await writeManifest(stage, manifest);
  await install(src.name, stage, entry);
  return { name: src.name, path: entry, reused: false, source: src, manifest };
}

/**
 * A file already verified once can stay: one finished by an earlier interrupted run (in staging), or a good
 * file of the entry being replaced (hard-linked across). Same address, same pinned digest, and the bytes
 * still as recorded (size, and mtime or else a fresh hash).
 */
async function reuse(file: RemoteFile, stage: string, staged: Manifest | undefined, current: Manifest | undefined, entry: string): Promise<FileRecord | undefined> {
  const dest = path.join(stage, file.name);
  const matches = async (where: string, rec: FileRecord | undefined): Promise<boolean> => {
    if (!rec || rec.url !== file.url || (file.sha256 && file.sha256 !== rec.sha256) || (file.size !== undefined && file.size !== rec.size)) return false;
    const st = await stat(where).catch(() => undefined);
    if (!st || st.size !== rec.size) return false;
    return (rec.mtimeMs !== undefined && st.mtimeMs === rec.mtimeMs) || (await sha256File(where)) === rec.sha256;
  };
  const s = staged?.files[file.name];
  if (await matches(dest, s)) return s;
  const c = current?.files[file.name];
  const from = path.join(entry, file.name);
  if (await matches(from, c)) {
    await rm(dest, { force: true });
    await link(from, dest).catch(() => copyFile(from, dest));
    return { ...c!, mtimeMs: undefined };
  }
  return undefined;
}

async function fetchFile(stage: string, name: string, file: RemoteFile, opts: DownloadModelOptions): Promise<FileRecord> {
  const dest = path.join(stage, file.name);
  await rm(dest, { force: true }); // a stale copy must not survive a failed re-download
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
  // The mtime lets a resumed run keep this file without hashing it again.
  return { size: got.size, sha256: got.sha256, url: file.url, pinned: got.pinned, mtimeMs: (await stat(dest)).mtimeMs };
}

/** After a failure keep only what a later run can resume (`.part` bytes); otherwise leave nothing behind. */
async function tidyFailedStage(stage: string): Promise<void> {
  const names = await readdir(stage).catch(() => [] as string[]);
  let resumable = false;
  for (const f of names) if (f.endsWith('.part') && ((await fileSize(path.join(stage, f))) ?? 0) > 0) resumable = true;
  if (!resumable) await rm(stage, { recursive: true, force: true });
}

/** Drop anything in staging that is not part of this source (left by another source or an older run). */
async function pruneStage(stage: string, files: RemoteFile[]): Promise<void> {
  const keep = new Set([MANIFEST_FILE, ...files.map((f) => f.name)]);
  for (const f of await readdir(stage)) if (!keep.has(f)) await rm(path.join(stage, f), { recursive: true, force: true });
}

/**
 * Swap the staging folder in. The old entry moves to the trash first (a directory cannot be renamed over a
 * non-empty one); a reader that opened its files keeps reading them, a new reader sees the new entry.
 */
async function install(name: string, stage: string, entry: string): Promise<void> {
  await mkdir(trashRoot(), { recursive: true });
  const trash = path.join(trashRoot(), `${name}@${process.pid}-${randomUUID()}`); // '@' never occurs in a name
  let moved = false;
  try {
    await rename(entry, trash);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    await rename(stage, entry);
  } catch (err) {
    if (moved) await rename(trash, entry).catch(() => undefined);
    throw err;
  }
  await rm(trash, { recursive: true, force: true });
}

/** Old entries a crashed install left in the trash (we hold the lock for `name`, so none is in use). */
async function clearTrash(name: string): Promise<void> {
  const names = await readdir(trashRoot()).catch(() => [] as string[]);
  for (const f of names) if (f.startsWith(`${name}@`)) await rm(path.join(trashRoot(), f), { recursive: true, force: true });
}

/** A damaged entry stops being complete at once, so nothing loads it while (or if) the new copy downloads. */
async function invalidate(check: VerifyResult): Promise<void> {
  if (!check.manifest?.complete) return;
  await writeManifest(check.path, { ...check.manifest, complete: false });
}

/** After a rehash proved touched files intact, record their mtimes so the next use need not hash again. */
async function refreshMtimes(check: VerifyResult): Promise<void> {
  const m = check.manifest!;
  for (const [f, rec] of Object.entries(m.files)) rec.mtimeMs = (await stat(path.join(check.path, f))).mtimeMs;
  await writeManifest(check.path, m);
}
