// Where models come from: known names → download addresses, plus the rules that turn an arbitrary
// https:// URL or a Hub `owner/repo` into the same shape. Nothing here touches the network.
import { readFileSync } from 'node:fs';

/** Every cache entry holds the config plus one weights file under a name that model/load.ts looks for. */
export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'pytorch_model.bin';
export const WEIGHT_FILE_NAMES = [WEIGHTS_FILE, 'model.safetensors', 'model.pth'] as const;

export type SourceKind = 's3' | 'hub' | 'url' | 'registry';

export interface RemoteFile {
  /** file name inside the cache entry */
  name: string;
  url: string;
  /** byte count, where published */
  size?: number;
  /** lower-case hex SHA-256, where published */
  sha256?: string;
}

/** One way to fetch one model: the cache entry it fills and the files it needs. */
export interface ModelSource {
  name: string;
  kind: SourceKind;
  files: RemoteFile[];
}

/** Published addresses (HF pytorch-pretrained-BigGAN `model.py` L29-39). */
export const DEFAULT_S3_BASE = 'https://s3.amazonaws.com/models.huggingface.co/biggan';
export const DEFAULT_HUB_BASE = 'https://huggingface.co';

interface KnownModel {
  /** S3 object prefix: `<prefix>-pytorch_model.bin`, `<prefix>-config.json` */
  s3Prefix: string;
  /** Hub mirror, where one is known to exist */
  hubRepo?: string;
  /** what the Hub mirror publishes about its files (Git-LFS pointer) */
  hubPins?: Partial<Record<string, { sha256?: string; size?: number }>>;
}

// Only the 128 mirror is confirmed on the Hub (docs/biggan-reference.md A.1). Whether it is byte-identical
// to the S3 file is unknown, so its digest pins the Hub source only; S3 files are checked against their
// Content-Length and recorded with the SHA-256 computed on the way in.
export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
  'biggan-deep-128': {
    s3Prefix: 'biggan-deep-128',
    hubRepo: 'osanseviero/BigGAN-deep-128',
    hubPins: { [WEIGHTS_FILE]: { sha256: 'b86146a8cfcde4cda135adba4b2806f78b3abe2dac9d0fd090cc3ab318604ad9' } },
  },
  'biggan-deep-256': { s3Prefix: 'biggan-deep-256' },
  'biggan-deep-512': { s3Prefix: 'biggan-deep-512' },
};

export interface ResolveOptions {
  /** preferred source for known names; default: S3 first, then the Hub mirror */
  source?: 's3' | 'hub';
  /** cache entry name for URLs and Hub repos (known names keep their own) */
  name?: string;
  /**
   * `CAWA_S3_BASE` and `HF_ENDPOINT` replace the S3 and Hub base addresses (mirrors, tests);
   * `CAWA_REGISTRY` names a JSON file of extra models; `CAWA_ALLOW_HTTP=1` allows plain http.
   */
  env?: NodeJS.ProcessEnv;
}

const HUB_REPO = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;
const ENTRY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Entry names become folder names, so they must be one safe path segment. */
export function assertEntryName(name: string): string {
  if (!ENTRY_NAME.test(name) || name.includes('..')) {
    throw new Error(`invalid model name "${name}": use letters, digits, '.', '_' and '-'`);
  }
  return name;
}

export function isUrl(spec: string): boolean {
  return /^https?:\/\//i.test(spec);
}

export function isHubRepo(spec: string): boolean {
  return HUB_REPO.test(spec);
}

/**
 * A checkpoint is a pickle and a config steers the graph, so take them over TLS. Plain http is allowed to
 * loopback (tests, local mirrors) or when the user opts in with CAWA_ALLOW_HTTP=1.
 */
export function checkUrl(spec: string, env: NodeJS.ProcessEnv = process.env): URL {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new Error(`invalid address "${spec}"`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol !== 'http:') throw new Error(`unsupported address "${spec}": use https://`);
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (!loopback && env.CAWA_ALLOW_HTTP !== '1') {
    throw new Error(`refusing plain http for ${url.host}: use https:// (or set CAWA_ALLOW_HTTP=1)`);
  }
  return url;
}

/** The cache entry a spec (known name, URL or owner/repo) lands in, without resolving its files. */
export function entryNameFor(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  const reg = lookupRegistry(spec, env);
  if (reg) return reg.name;
  if (KNOWN_MODELS[spec.toLowerCase()]) return spec.toLowerCase();
  if (isUrl(spec)) return nameFromUrl(checkUrl(spec, env));
  if (isHubRepo(spec)) return spec.replace('/', '--');
  return assertEntryName(spec);
}

/**
 * Candidate sources for a spec, best first. Later sources are tried only when an earlier one answers
 * "not there" (403/404/410): a dead S3 bucket falls back to the Hub mirror, a Hub repo without
 * pytorch_model.bin falls back to model.safetensors.
 */
export function resolveSources(spec: string, opts: ResolveOptions = {}): ModelSource[] {
  const env = opts.env ?? process.env;
  const reg = lookupRegistry(spec, env);
  if (reg) return reg.sources;
  const known = KNOWN_MODELS[spec.toLowerCase()];
  if (known) return knownSources(spec.toLowerCase(), known, opts.source, env);
  if (opts.source) throw new Error(`--source only applies to known models (${knownNames(env)})`);
  if (isUrl(spec)) return urlSources(checkUrl(spec, env), opts.name);
  if (isHubRepo(spec)) return hubSources(opts.name ?? spec.replace('/', '--'), spec, hubBase(env));
  throw new Error(`unknown model "${spec}": use one of ${knownNames(env)}, an https:// URL or a Hub owner/repo`);
}

export function knownNames(env: NodeJS.ProcessEnv = process.env): string {
  return [...Object.keys(KNOWN_MODELS), ...Object.keys(readRegistry(env))].join(', ');
}

function s3Base(env: NodeJS.ProcessEnv): string {
  return trimSlash(env.CAWA_S3_BASE || DEFAULT_S3_BASE);
}

/** HF_ENDPOINT is the variable huggingface_hub itself reads for a Hub mirror. */
function hubBase(env: NodeJS.ProcessEnv): string {
  return trimSlash(env.HF_ENDPOINT || DEFAULT_HUB_BASE);
}

function knownSources(name: string, m: KnownModel, pref: 's3' | 'hub' | undefined, env: NodeJS.ProcessEnv): ModelSource[] {
  const root = s3Base(env);
  const s3: ModelSource = {
    name,
    kind: 's3',
    files: [
      { name: CONFIG_FILE, url: `${root}/${m.s3Prefix}-config.json` },
      { name: WEIGHTS_FILE, url: `${root}/${m.s3Prefix}-pytorch_model.bin` },
    ],
  };
  // The mirror is known to hold pytorch_model.bin, so there is no safetensors fallback to try.
  const hub = m.hubRepo ? hubSources(name, m.hubRepo, hubBase(env), m.hubPins).slice(0, 1) : [];
  if (pref === 's3') return [s3];
  if (pref === 'hub') {
    if (!hub.length) throw new Error(`no Hub mirror is known for ${name}; pass a Hub owner/repo with --name ${name}`);
    return hub;
  }
  return [s3, ...hub];
}

function hubSources(name: string, repo: string, base: string, pins?: KnownModel['hubPins']): ModelSource[] {
  const root = `${base}/${repo}/resolve/main`;
  const file = (f: string): RemoteFile => ({ name: f, url: `${root}/${f}`, ...pins?.[f] });
  return [WEIGHTS_FILE, 'model.safetensors'].map((w) => ({
    name: assertEntryName(name),
    kind: 'hub' as const,
    files: [file(CONFIG_FILE), file(w)],
  }));
}

/** The entry name a downloaded weights file gets, from its extension; undefined when it is not one. */
function localWeightsName(file: string): string | undefined {
  if (/\.bin$/i.test(file)) return WEIGHTS_FILE;
  if (/\.safetensors$/i.test(file)) return 'model.safetensors';
  if (/\.pth?$/i.test(file)) return 'model.pth';
  return undefined;
}

/**
 * A URL names either the weights file itself or a folder holding `config.json` and the weights (the Hub
 * layout). Beside a weights file the config is `<prefix>-config.json` for the S3 naming
 * (`biggan-deep-256-pytorch_model.bin`), else `config.json`.
 */
function urlSources(url: URL, name?: string): ModelSource[] {
  const entry = assertEntryName(name ?? nameFromUrl(url));
  const parts = url.pathname.split('/');
  const last = decodeURIComponent(parts.at(-1) ?? '');
  const weights = localWeightsName(last);
  const sibling = (file: string): string => {
    const u = new URL(url.href);
    u.pathname = [...parts.slice(0, -1), file].join('/');
    u.search = ''; // a signed weights URL's query does not sign its neighbour
    return u.href;
  };
  if (weights) {
    const prefix = last.match(/^(.+)[-_]pytorch_model\.bin$/i)?.[1];
    const config = sibling(prefix ? `${prefix}-${CONFIG_FILE}` : CONFIG_FILE);
    return [{ name: entry, kind: 'url', files: [{ name: CONFIG_FILE, url: config }, { name: weights, url: url.href }] }];
  }
  // each file's address keeps the folder's query (if any); `${href}/file` would land after the query, and at
  // the host root it would make `//file`
  const folderPath = url.pathname.replace(/\/config\.json$/i, '').replace(/\/+$/, '');
  const inFolder = (file: string): string => {
    const u = new URL(url.href);
    u.pathname = `${folderPath}/${file}`;
    u.hash = '';
    return u.href;
  };
  return [WEIGHTS_FILE, 'model.safetensors'].map((w) => ({
    name: entry,
    kind: 'url' as const,
    files: [{ name: CONFIG_FILE, url: inFolder(CONFIG_FILE) }, { name: w, url: inFolder(w) }],
  }));
}

/**
 * `…/biggan-deep-256-pytorch_model.bin` → `biggan-deep-256` (the known name, so `--model` spellings
 * agree); `…/owner/repo/resolve/main/…` → `owner--repo`; `…/some/folder/` or `…/folder/model.pth` → `folder`.
 */
function nameFromUrl(url: URL): string {
  const parts = url.pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  const resolve = parts.indexOf('resolve');
  if (resolve >= 2) return assertEntryName(`${parts[resolve - 2]}--${parts[resolve - 1]}`);
  let last = parts.at(-1) ?? '';
  const prefix = last.match(/^(.+)[-_]pytorch_model\.bin$/i)?.[1];
  if (prefix) last = prefix;
  else if (localWeightsName(last) || last === CONFIG_FILE) {
    const stem = last.replace(/\.[^.]+$/, '');
    last = ['pytorch_model', 'model', 'config'].includes(stem) ? (parts.at(-2) ?? '') : stem;
  }
  const cleaned = last.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return assertEntryName(cleaned || url.hostname.replace(/[^A-Za-z0-9.-]/g, '-'));
}

// ------------------------------------------------------------------------------ CAWA_REGISTRY file

/**
 * Extra models, one JSON object: `{ "<name>": { "files": [{ "name": "config.json", "url": …, "size"?: …,
 * "sha256"?: … }, …] } }`, or `"sources": [{ "files": […] }, …]` for fallbacks. It lets a site pin its own
 * mirror with digests, and lets tests point a name at a loopback server.
 */
interface RegistryEntry {
  name: string;
  sources: ModelSource[];
}

function readRegistry(env: NodeJS.ProcessEnv): Record<string, RegistryEntry> {
  const file = env.CAWA_REGISTRY;
  if (!file) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`CAWA_REGISTRY ${file}: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new Error(`CAWA_REGISTRY ${file}: expected an object of model names`);
  const out: Record<string, RegistryEntry> = {};
  for (const [name, v] of Object.entries(raw)) {
    const where = `CAWA_REGISTRY ${file}: "${name}"`;
    assertEntryName(name);
    const sources = isObject(v) && Array.isArray(v.sources) ? v.sources : [v];
    out[name] = { name, sources: sources.map((s) => registrySource(name, s, where, env)) };
  }
  return out;
}

function registrySource(name: string, s: unknown, where: string, env: NodeJS.ProcessEnv): ModelSource {
  if (!isObject(s) || !Array.isArray(s.files)) throw new Error(`${where}: expected { "files": [...] }`);
  const files = s.files.map((f): RemoteFile => {
    if (!isObject(f) || typeof f.name !== 'string' || typeof f.url !== 'string') throw new Error(`${where}: each file needs "name" and "url"`);
    if (f.name !== CONFIG_FILE && !(WEIGHT_FILE_NAMES as readonly string[]).includes(f.name)) {
      throw new Error(`${where}: file name "${f.name}" must be ${CONFIG_FILE} or one of ${WEIGHT_FILE_NAMES.join(', ')}`);
    }
    if (f.sha256 !== undefined && (typeof f.sha256 !== 'string' || !SHA256.test(f.sha256.toLowerCase()))) throw new Error(`${where}: sha256 must be 64 hex digits`);
    if (f.size !== undefined && !(Number.isSafeInteger(f.size) && (f.size as number) >= 0)) throw new Error(`${where}: size must be a byte count`);
    return { name: f.name, url: checkUrl(f.url, env).href, size: f.size as number | undefined, sha256: (f.sha256 as string | undefined)?.toLowerCase() };
  });
  const names = files.map((f) => f.name);
  if (!names.includes(CONFIG_FILE) || names.length !== 2 || new Set(names).size !== 2) {
    throw new Error(`${where}: a source has exactly two files, ${CONFIG_FILE} and one weights file`);
  }
  return { name, kind: 'registry', files };
}

function lookupRegistry(spec: string, env: NodeJS.ProcessEnv): RegistryEntry | undefined {
  const reg = readRegistry(env);
  return reg[spec] ?? reg[spec.toLowerCase()];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function trimSlash(s: string): string {
  return s.replace(/\/+$/, '');
}
