// The model cache: one folder per model under `<cache home>/models/<name>/`, holding `config.json`,
// `pytorch_model.bin` and `manifest.json`. The manifest is the only proof an entry is whole: it is written
// last (atomically) and records each file's size and SHA-256, so truncation or corruption after the fact
// is detected instead of silently loading a broken checkpoint.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { MODEL_FILES, entryNameFor } from './registry.ts';

export const APP_DIR = 'channel-awareness';
export const MANIFEST_FILE = 'manifest.json';

export interface FileRecord {
  size: number;
  sha256: string;
  url?: string;
}

export interface Manifest {
  name: string;
  /** where the files came from, in file order */
  sources: string[];
  files: Record<string, FileRecord>;
  /** true only once every file is in place and verified */
  complete: boolean;
  updatedAt: string;
}

export interface VerifyResult {
  name: string;
  path: string;
  /** manifest says complete */
  complete: boolean;
  /** complete and every check passed */
  ok: boolean;
  /** whether SHA-256 was recomputed (otherwise only sizes were compared) */
  deep: boolean;
  /** total bytes of the model files on disk */
  size: number;
  problems: string[];
}

/**
 * `$CAWA_HOME`, else `$XDG_CACHE_HOME/channel-awareness`, else the platform's cache folder:
 * `~/.cache` (Linux and others), `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows).
 */
export function cacheHome(env: NodeJS.ProcessEnv = process.env, platform = process.platform, home = os.homedir()): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  if (env.CAWA_HOME) return p.resolve(env.CAWA_HOME);
  // XDG says relative values are invalid and must be ignored.
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

/** Lock files sit beside, not inside, the entry so listing and deleting entries never trips over them. */
export function lockPath(name: string): string {
  return path.join(modelsDir(), `${name}.lock`);
}

export function readManifest(dir: string): Manifest | undefined {
  try {
    const m = JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as Manifest;
    return m && typeof m === 'object' && m.files && typeof m.files === 'object' ? m : undefined;
  } catch {
    return undefined; // missing or half-written by a foreign tool: treat as no manifest
  }
}

/** Write-then-rename, so a reader never sees a half-written manifest. */
export async function writeManifest(dir: string, m: Manifest): Promise<void> {
  const file = path.join(dir, MANIFEST_FILE);
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, `${JSON.stringify(m, null, 2)}\n`);
  await rename(tmp, file);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** Cheap check: the manifest is complete and every file has the recorded size. */
export function checkEntry(name: string): VerifyResult {
  const dir = entryPath(name);
  const m = readManifest(dir);
  const result: VerifyResult = { name, path: dir, complete: !!m?.complete, ok: false, deep: false, size: 0, problems: [] };
  if (!m) {
    result.problems.push(existsSync(dir) ? 'no manifest (incomplete download)' : 'not downloaded');
    return result;
  }
  if (!m.complete) result.problems.push('incomplete download');
  for (const f of MODEL_FILES) checkFileSize(dir, f, m.files[f], result);
  result.ok = result.complete && result.problems.length === 0;
  return result;
}

function checkFileSize(dir: string, file: string, rec: FileRecord | undefined, result: VerifyResult): void {
  const size = fileSize(path.join(dir, file));
  if (size !== undefined) result.size += size;
  if (!rec) return void (result.complete && result.problems.push(`${file}: not in manifest`));
  if (size === undefined) result.problems.push(`${file}: missing`);
  else if (size !== rec.size) result.problems.push(`${file}: size ${size}, expected ${rec.size}`);
}

/** Cheap check by default; `deep` also recomputes every SHA-256 (catches same-size corruption). */
export async function verifyEntry(name: string, opts: { deep?: boolean } = {}): Promise<VerifyResult> {
  const result = checkEntry(name);
  if (!opts.deep || !result.ok) return result;
  result.deep = true;
  const m = readManifest(result.path)!;
  for (const f of MODEL_FILES) {
    const actual = await sha256File(path.join(result.path, f));
    if (actual !== m.files[f].sha256) result.problems.push(`${f}: sha256 ${actual}, expected ${m.files[f].sha256}`);
  }
  result.ok = result.problems.length === 0;
  return result;
}

/**
 * Folder of a complete entry whose files have the recorded sizes, else undefined. Accepts whatever
 * `cawa download` accepted (known name, URL, owner/repo), so `--model` can take the same spelling.
 */
export function resolveCachedModel(spec: string): string | undefined {
  let name: string;
  try {
    name = entryNameFor(spec);
  } catch {
    return undefined;
  }
  const r = checkEntry(name);
  return r.ok ? r.path : undefined;
}

/** For `--model` options: an existing folder is used as is, otherwise the cache entry of that name. */
export function resolveModelPath(arg: string): string {
  if (existsSync(arg) && statSync(arg).isDirectory()) return arg;
  const cached = resolveCachedModel(arg);
  if (cached) return cached;
  throw new Error(`model "${arg}" is not a folder and not in the cache (${modelsDir()}): run \`cawa download ${arg}\``);
}

/** Every entry folder in the cache, with a cheap check (use `verifyEntry(name, {deep:true})` for hashes). */
export function listCachedModels(): VerifyResult[] {
  const dir = modelsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => checkEntry(d.name))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function fileSize(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}
