// The model cache. Layout under `<cache home>/models/`:
//   <name>/                  one entry per model: config.json, the weights, manifest.json
//   .downloads/<name>/       staging for a download in progress (`*.part` files that a later run resumes)
//   .downloads/<name>.lock   held while one process downloads <name>
//   .downloads/.trash/       an entry being replaced, for the instant between two renames
// An entry folder only ever appears by renaming a complete, verified staging folder into place, and its
// manifest records each file's size, SHA-256 and mtime. A file whose size differs is damaged; one whose
// mtime differs was touched and is hashed again before use. A damaged entry is never loaded.
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CONFIG_FILE, WEIGHT_FILE_NAMES, type RemoteFile, type SourceKind, entryNameFor } from './registry.ts';

export const APP_DIR = 'channel-awareness';
export const MANIFEST_FILE = 'manifest.json';
const STAGING_DIR = '.downloads';

export interface FileRecord {
  size: number;
  sha256: string;
  url: string;
  /** the SHA-256 was checked against a published digest, not only computed on the way in */
  pinned: boolean;
  /** mtime when last hashed; any other mtime means the file was touched and must be hashed again */
  mtimeMs?: number;
}

export interface Manifest {
  version: 1;
  name: string;
  kind: SourceKind;
  /** where the files come from, so `cawa download <name>` can verify or resume an entry named by --name */
  source?: { kind: SourceKind; files: RemoteFile[] };
  files: Record<string, FileRecord>;
  /** true only once every file is in place and verified */
  complete: boolean;
  updatedAt: string;
}

export type EntryStatus = 'ok' | 'changed' | 'damaged' | 'incomplete' | 'missing';

export interface VerifyResult {
  name: string;
  path: string;
  /**
   * ok: every file as recorded; changed: sizes right but some mtime moved (hash again before trusting);
   * damaged: a file is missing, has the wrong size or the wrong hash; incomplete: no complete manifest.
   */
  status: EntryStatus;
  ok: boolean;
  /** files whose SHA-256 was recomputed by this check */
  rehashed: string[];
  /** every file's digest was published upstream (not only recorded by us) */
  pinned: boolean;
  /** total bytes of the entry's model files on disk */
  size: number;
  problems: string[];
  /** files found missing, of the wrong size or with the wrong hash: never to be reused */
  bad: string[];
  manifest?: Manifest;
}

/**
 * `$CAWA_HOME`, else `$XDG_CACHE_HOME/channel-awareness`, else the platform's cache folder:
 * `~/.cache` (Linux and others), `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows).
 */
export function cacheHome(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform, home = os.homedir()): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  if (env.CAWA_HOME) return p.resolve(env.CAWA_HOME);
  // XDG says relative values are invalid and must be ignored; macOS and Windows users set it on purpose.
  if (env.XDG_CACHE_HOME && p.isAbsolute(env.XDG_CACHE_HOME)) return p.join(env.XDG_CACHE_HOME, APP_DIR);
  if (platform === 'darwin') return p.join(home, 'Library', 'Caches', APP_DIR);
  if (platform === 'win32') return p.join(env.LOCALAPPDATA || p.join(home, 'AppData', 'Local'), APP_DIR);
  return p.join(home, '.cache', APP_DIR);
}

export function modelsDir(): string {
  return path.join(cacheHome(), 'models');
}

export function entryPath(name: string): string {
  return path.join(modelsDir(), name);
}

/** Staging and locks live in a dot-folder entry names cannot collide with (they start with a letter or digit). */
export function stagingRoot(): string {
  return path.join(modelsDir(), STAGING_DIR);
}

export function stagingPath(name: string): string {
  return path.join(stagingRoot(), name);
}

export function lockPath(name: string): string {
  return path.join(stagingRoot(), `${name}.lock`);
}

export function trashRoot(): string {
  return path.join(stagingRoot(), '.trash');
}

export function readManifest(dir: string): Manifest | undefined {
  try {
    const m = JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as Manifest;
    return m && typeof m === 'object' && m.files && typeof m.files === 'object' ? m : undefined;
  } catch {
    return undefined; // missing or foreign: treat as no manifest
  }
}

/** Write-then-rename, so a reader never sees a half-written manifest. */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  m.updatedAt = new Date().toISOString();
  const file = path.join(dir, MANIFEST_FILE);
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(m, null, 2)}\n`);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 4 << 20 }), hash); // big reads: ~2x faster than 64 KiB
  return hash.digest('hex');
}

/** Synchronous twin for `--model` resolution, which is synchronous; reads in 4 MiB chunks. */
export function sha256FileSync(file: string): string {
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Cheap check, no hashing: a complete manifest, a config and weights, every file with its recorded size. */
export function checkEntry(name: string): VerifyResult {
  const dir = entryPath(name);
  const result: VerifyResult = { name, path: dir, status: 'missing', ok: false, rehashed: [], pinned: false, size: 0, problems: [], bad: [] };
  if (!existsSync(dir)) return result;
  const m = readManifest(dir);
  result.manifest = m;
  if (!m?.complete) {
    result.status = 'incomplete';
    result.problems.push(m ? 'download not finished (or a damaged file was found)' : 'no manifest');
    return result;
  }
  const names = Object.keys(m.files);
  if (!names.includes(CONFIG_FILE)) result.problems.push(`no ${CONFIG_FILE} in manifest`);
  if (!names.some((f) => (WEIGHT_FILE_NAMES as readonly string[]).includes(f))) result.problems.push('no weights file in manifest');
  let changed = false;
  for (const [f, rec] of Object.entries(m.files)) {
    const st = statOrUndefined(path.join(dir, f));
    if (!st) {
      result.problems.push(`${f}: missing`);
      result.bad.push(f);
    } else {
      result.size += st.size;
      if (st.size !== rec.size) {
        result.problems.push(`${f}: ${st.size} bytes, expected ${rec.size}`);
        result.bad.push(f);
      }
      else if (rec.mtimeMs === undefined || st.mtimeMs !== rec.mtimeMs) changed = true;
    }
  }
  result.pinned = names.length > 0 && Object.values(m.files).every((r) => r.pinned);
  result.status = result.problems.length ? 'damaged' : changed ? 'changed' : 'ok';
  result.ok = result.status === 'ok';
  return result;
}

/** Which files need hashing: all of them (`deep`), or those whose mtime moved since the manifest was written. */
function filesToHash(r: VerifyResult, deep: boolean): string[] {
  const m = r.manifest!;
  return Object.keys(m.files).filter((f) => deep || statSync(path.join(r.path, f)).mtimeMs !== m.files[f].mtimeMs);
}

function applyHashes(r: VerifyResult, hashes: [string, string][]): VerifyResult {
  for (const [f, actual] of hashes) {
    r.rehashed.push(f);
    const want = r.manifest!.files[f].sha256;
    if (actual !== want) {
      r.problems.push(`${f}: sha256 ${actual}, expected ${want}`);
      r.bad.push(f);
    }
  }
  r.status = r.problems.length ? 'damaged' : 'ok';
  r.ok = r.status === 'ok';
  return r;
}

/** The cheap check, then SHA-256 of touched files, or of every file with `deep`. */
export async function verifyEntry(name: string, opts: { deep?: boolean } = {}): Promise<VerifyResult> {
  const r = checkEntry(name);
  if (r.status !== 'ok' && r.status !== 'changed') return r;
  const todo = filesToHash(r, !!opts.deep);
  const hashes: [string, string][] = [];
  for (const f of todo) hashes.push([f, await sha256File(path.join(r.path, f))]);
  return applyHashes(r, hashes);
}

export function verifyEntrySync(name: string, opts: { deep?: boolean } = {}): VerifyResult {
  const r = checkEntry(name);
  if (r.status !== 'ok' && r.status !== 'changed') return r;
  return applyHashes(r, filesToHash(r, !!opts.deep).map((f) => [f, sha256FileSync(path.join(r.path, f))]));
}

/**
 * Folder of a verified entry for a spec (known name, URL or owner/repo, as `cawa download` accepts), or
 * undefined when there is none. A damaged or half-invalidated entry throws: loading it would be wrong and
 * "not downloaded" would mislead.
 */
export function resolveCachedModel(spec: string): string | undefined {
  let name: string;
  try {
    name = entryNameFor(spec);
  } catch {
    return undefined;
  }
  const r = verifyEntrySync(name);
  if (r.ok) return r.path;
  if (r.status === 'missing') return undefined;
  throw new Error(`downloaded model "${name}" in ${r.path} is ${r.status} (${r.problems.join('; ')}): run \`cawa download ${spec}\` to fetch it again`);
}

/** For `--model` options: an existing folder is used as is, otherwise the verified cache entry of that name. */
export function resolveModelPath(arg: string): string {
  if (existsSync(arg) && statSync(arg).isDirectory()) return arg;
  const cached = resolveCachedModel(arg);
  if (cached) return cached;
  throw new Error(`model "${arg}" is not a folder and not in the cache (${modelsDir()}): run \`cawa download ${arg}\``);
}

export interface PartialDownload {
  name: string;
  path: string;
  /** bytes already on disk, `.part` files included */
  bytes: number;
}

export interface CacheListing {
  entries: VerifyResult[];
  /** staging folders a later `cawa download <name>` resumes */
  partial: PartialDownload[];
}

/** Every entry with the cheap check (hash with `verifyEntry(name, { deep: true })`), plus unfinished downloads. */
export function listCachedModels(): CacheListing {
  const dirs = (root: string) =>
    existsSync(root) ? readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name) : [];
  const entries = dirs(modelsDir()).map((n) => checkEntry(n)).sort((a, b) => a.name.localeCompare(b.name));
  const partial = dirs(stagingRoot())
    .map((n) => {
      const p = stagingPath(n);
      const bytes = readdirSync(p).reduce((s, f) => s + (statOrUndefined(path.join(p, f))?.size ?? 0), 0);
      return { name: n, path: p, bytes };
    })
    .filter((p) => p.bytes > 0);
  return { entries, partial };
}

function statOrUndefined(file: string) {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}
