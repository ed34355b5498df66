// Where models come from: known names → download addresses, plus the rules that turn an arbitrary
// https:// URL or a Hub `owner/repo` into the same shape. Nothing here touches the network.

/** The two files every cache entry holds; they are what the reference port's `from_pretrained` loads. */
export const WEIGHTS_FILE = 'pytorch_model.bin';
export const CONFIG_FILE = 'config.json';
export const MODEL_FILES = [CONFIG_FILE, WEIGHTS_FILE] as const;
export type ModelFileName = (typeof MODEL_FILES)[number];

export type SourceKind = 's3' | 'hub' | 'url';

export interface RemoteFile {
  name: ModelFileName;
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

/** Published addresses (HF pytorch-pretrained-BigGAN `model.py`); overridable so tests can use loopback. */
export const DEFAULT_S3_BASE = 'https://s3.amazonaws.com/models.huggingface.co/biggan';
export const DEFAULT_HUB_BASE = 'https://huggingface.co';

interface KnownModel {
  /** S3 object prefix: `<prefix>-pytorch_model.bin`, `<prefix>-config.json` */
  s3Prefix: string;
  /** Hub mirror, where one is known to exist */
  hubRepo?: string;
  /** digests known for the Hub mirror's files (Git-LFS pointer) */
  hubSha256?: Partial<Record<ModelFileName, string>>;
}

// Only the 128 mirror is confirmed on the Hub; 256/512 can still be fetched from another repo by
// `cawa download owner/repo --name biggan-deep-256`.
export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
  'biggan-deep-128': {
    s3Prefix: 'biggan-deep-128',
    hubRepo: 'osanseviero/BigGAN-deep-128',
    hubSha256: { [WEIGHTS_FILE]: 'b86146a8cfcde4cda135adba4b2806f78b3abe2dac9d0fd090cc3ab318604ad9' },
  },
  'biggan-deep-256': { s3Prefix: 'biggan-deep-256' },
  'biggan-deep-512': { s3Prefix: 'biggan-deep-512' },
};

export interface ResolveOptions {
  /** preferred source for known names; default: S3 first, then the Hub mirror */
  source?: 's3' | 'hub';
  /** replaces the S3 or Hub base address (for mirrors and tests); default `$CAWA_DOWNLOAD_BASE` */
  base?: string;
  /** cache entry name for URLs and Hub repos (known names keep their own) */
  name?: string;
  env?: NodeJS.ProcessEnv;
}

const HUB_REPO = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;
const ENTRY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

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

/** The cache entry a spec (known name, URL or owner/repo) lands in, without resolving its files. */
export function entryNameFor(spec: string): string {
  if (isUrl(spec)) return nameFromUrl(new URL(spec));
  if (isHubRepo(spec)) return spec.replace('/', '--');
  return assertEntryName(KNOWN_MODELS[spec.toLowerCase()] ? spec.toLowerCase() : spec);
}

/**
 * Candidate sources for a spec, best first. Known names without `--source` get S3 then the Hub mirror,
 * so a dead S3 bucket falls back to the Hub.
 */
export function resolveSources(spec: string, opts: ResolveOptions = {}): ModelSource[] {
  const env = opts.env ?? process.env;
  const base = opts.base ?? (env.CAWA_DOWNLOAD_BASE || undefined);
  const known = KNOWN_MODELS[spec.toLowerCase()];
  if (known) return knownSources(spec.toLowerCase(), known, opts.source, base);
  if (opts.source === 's3') throw new Error(`--source s3 only applies to known models (${knownNames()})`);
  if (isUrl(spec)) return [urlSource(spec, opts.name)];
  if (isHubRepo(spec)) return [hubSource(opts.name ?? entryNameFor(spec), spec, base ?? DEFAULT_HUB_BASE)];
  throw new Error(`unknown model "${spec}": use one of ${knownNames()}, an https:// URL or a Hub owner/repo`);
}

export function knownNames(): string {
  return Object.keys(KNOWN_MODELS).join(', ');
}

function knownSources(name: string, m: KnownModel, pref: 's3' | 'hub' | undefined, base?: string): ModelSource[] {
  const s3 = s3Source(name, m, base ?? DEFAULT_S3_BASE);
  const hub = m.hubRepo ? hubSource(name, m.hubRepo, base ?? DEFAULT_HUB_BASE, m.hubSha256) : undefined;
  if (pref === 's3') return [s3];
  if (pref === 'hub') {
    if (!hub) throw new Error(`no Hub mirror is known for ${name}; pass a Hub owner/repo with --name ${name}`);
    return [hub];
  }
  return hub ? [s3, hub] : [s3];
}

function s3Source(name: string, m: KnownModel, base: string): ModelSource {
  const root = trimSlash(base);
  return {
    name,
    kind: 's3',
    files: [
      { name: CONFIG_FILE, url: `${root}/${m.s3Prefix}-config.json` },
      { name: WEIGHTS_FILE, url: `${root}/${m.s3Prefix}-pytorch_model.bin` },
    ],
  };
}

function hubSource(name: string, repo: string, base: string, sha?: KnownModel['hubSha256']): ModelSource {
  const root = `${trimSlash(base)}/${repo}/resolve/main`;
  return {
    name: assertEntryName(name),
    kind: 'hub',
    files: MODEL_FILES.map((f) => ({ name: f, url: `${root}/${f}`, ...(sha?.[f] ? { sha256: sha[f] } : {}) })),
  };
}

/**
 * A URL names either the weights file itself (`…pytorch_model.bin`, whose config sits beside it as
 * `…config.json`, the S3 layout) or a folder holding both files (the Hub layout).
 */
function urlSource(spec: string, name?: string): ModelSource {
  const url = new URL(spec);
  const entry = assertEntryName(name ?? nameFromUrl(url));
  if (url.pathname.endsWith(WEIGHTS_FILE)) {
    const config = new URL(url.href);
    config.pathname = url.pathname.slice(0, -WEIGHTS_FILE.length) + CONFIG_FILE;
    return { name: entry, kind: 'url', files: [{ name: CONFIG_FILE, url: config.href }, { name: WEIGHTS_FILE, url: url.href }] };
  }
  const root = trimSlash(url.href);
  return { name: entry, kind: 'url', files: MODEL_FILES.map((f) => ({ name: f, url: `${root}/${f}` })) };
}

/**
 * `…/biggan-deep-256-pytorch_model.bin` → `biggan-deep-256`; `…/owner/repo/resolve/main/…` → `owner--repo`;
 * `…/some/folder/` → `folder`.
 */
function nameFromUrl(url: URL): string {
  const parts = url.pathname.split('/').filter(Boolean);
  const resolve = parts.indexOf('resolve');
  if (resolve >= 2) return assertEntryName(`${parts[resolve - 2]}--${parts[resolve - 1]}`);
  let last = parts.at(-1) ?? '';
  if (last === WEIGHTS_FILE) last = parts.at(-2) ?? '';
  else if (last.endsWith(`-${WEIGHTS_FILE}`)) last = last.slice(0, -WEIGHTS_FILE.length - 1);
  const cleaned = last.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return assertEntryName(cleaned || url.hostname.replace(/[^A-Za-z0-9.-]/g, '-'));
}

function trimSlash(s: string): string {
  return s.replace(/\/+$/, '');
}
