// `cawa download`: a published checkpoint into the model cache, resumable and verified, so that
// `--model <name>` works in every command afterwards.
import { Command, Option } from 'commander';
import { cacheHome } from '../io/cache.ts';
import { DownloadError, type DownloadEvent, type DownloadModelResult, downloadModel } from '../io/download.ts';
import { byteProgress, formatBytes, printJson } from './common.ts';

const MIN_BAR_BYTES = 64 * 1024;

interface DownloadOpts {
  force?: boolean;
  json?: boolean;
  name?: string;
  source?: 's3' | 'hub';
}

export function register(program: Command): void {
  program
    .command('download')
    .description('download a model into the cache (CAWA_HOME overrides where): biggan-deep-128/256/512, an https:// URL or a Hub owner/repo')
    .argument('<model>', 'known name, https:// URL (of a folder or a weights file) or Hugging Face Hub owner/repo')
    .option('-f, --force', 'fetch every file again, even if a verified copy is cached')
    .option('--name <name>', 'cache entry name for a URL or Hub repo (default: derived from the address)')
    .addOption(new Option('--source <where>', 'for known names: where to fetch from (default: S3, then the Hub mirror)').choices(['s3', 'hub']))
    .option('--json', 'print the result (or the error) as JSON on stdout')
    .action(run);
}

async function run(spec: string, opts: DownloadOpts): Promise<void> {
  const bars = new Map<string, ReturnType<typeof byteProgress>>();
  const stopBars = (): void => {
    for (const b of bars.values()) b.stop();
    bars.clear();
  };
  let result: DownloadModelResult;
  try {
    result = await downloadModel(spec, {
      force: opts.force,
      name: opts.name,
      source: opts.source,
      onEvent: (e) => {
        stopBars(); // a message in the middle of a live bar would garble both
        const msg = describe(e);
        if (msg) process.stderr.write(`${msg}\n`);
      },
      onProgress: (p) => {
        if (p.total !== undefined && p.total < MIN_BAR_BYTES) return; // a config.json needs no bar
        let bar = bars.get(p.file);
        if (!bar) bars.set(p.file, (bar = byteProgress(p.file)));
        bar.update(p.received, p.total);
      },
    });
  } catch (err) {
    stopBars();
    if (opts.json) {
      const kind = err instanceof DownloadError ? err.kind : 'error';
      printJson({ ok: false, model: spec, kind, error: (err as Error).message });
    }
    throw err; // main.ts prints it and exits non-zero
  }
  stopBars();
  const files = Object.entries(result.manifest.files).map(([file, r]) => ({ file, size: r.size, sha256: r.sha256, pinned: r.pinned, url: r.url }));
  const size = files.reduce((s, f) => s + f.size, 0);
  if (opts.json) {
    printJson({ ok: true, name: result.name, path: result.path, reused: result.reused, source: result.source?.kind ?? result.manifest.kind, size, files, cache: cacheHome() });
    return;
  }
  const how = result.reused ? 'already downloaded and verified' : 'downloaded and verified';
  process.stderr.write(`${result.name}: ${how}, ${formatBytes(size)} in ${result.path}\n`);
  process.stderr.write(`use it with: cawa generate --model ${result.name} ...\n`);
}

function describe(e: DownloadEvent): string | undefined {
  switch (e.type) {
    case 'waiting':
      return `another download of ${e.name} is running; waiting for it (lock ${e.lock})`;
    case 'damaged':
      return `cached ${e.name} is not usable (${e.problems.join('; ')}); fetching it again`;
    case 'fallback': {
      const fresh = e.next.files.filter((f) => !e.from.files.some((g) => g.url === f.url)).map((f) => f.url);
      return `${e.error}; trying ${e.next.kind === 'hub' && e.from.kind !== 'hub' ? 'the Hub mirror: ' : ''}${fresh.join(', ')}`;
    }
    case 'kept':
      return `${e.file}: verified copy kept`;
    case 'retry':
      return `${e.error}; retrying in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt + 1})`;
    case 'file':
      return process.env.CAWA_NO_PROGRESS ? `fetching ${e.file} from ${e.url}` : undefined;
    case 'reused':
      return undefined; // the summary line says so
  }
}
