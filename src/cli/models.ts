// `cawa models`: what is in the model cache, how big, where, and whether it checks out.
import { Command } from 'commander';
import { type VerifyResult, cacheHome, listCachedModels, verifyEntry } from '../io/cache.ts';
import { knownNames } from '../io/registry.ts';
import { formatBytes, printJson } from './common.ts';

interface ModelsOpts {
  json?: boolean;
  verify?: boolean;
}

export function register(program: Command): void {
  program
    .command('models')
    .description('list downloaded models: name, size, path and whether they verify')
    .option('--verify', 'recompute every SHA-256 (default: sizes, and hashes only of files touched since download)')
    .option('--json', 'print the list as JSON on stdout')
    .action(run);
}

interface Row {
  name: string;
  size: number;
  path: string;
  verified: boolean;
  status: VerifyResult['status'] | 'partial';
  /** every file's digest was published upstream, not only recorded on download */
  pinned: boolean;
  problems: string[];
}

async function run(opts: ModelsOpts): Promise<void> {
  const { entries, partial } = listCachedModels();
  const rows: Row[] = [];
  for (const e of entries) {
    // Without --verify, touched files are hashed anyway: "verified" must never be claimed on a guess.
    const r = e.status === 'ok' && !opts.verify ? e : await verifyEntry(e.name, { deep: !!opts.verify });
    rows.push({ name: r.name, size: r.size, path: r.path, verified: r.ok, status: r.status, pinned: r.pinned, problems: r.problems });
  }
  for (const p of partial) {
    rows.push({ name: p.name, size: p.bytes, path: p.path, verified: false, status: 'partial', pinned: false, problems: [`unfinished download: \`cawa download ${p.name}\` resumes it`] });
  }
  if (opts.json) return printJson(rows);
  process.stdout.write(`cache: ${cacheHome()}\n`);
  if (!rows.length) {
    process.stdout.write(`no models downloaded; known names: ${knownNames()} (cawa download <name>)\n`);
    return;
  }
  const table = rows.map((r) => [r.name, formatBytes(r.size), verdict(r), r.path]);
  const head = ['NAME', 'SIZE', 'VERIFIED', 'PATH'];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  for (const line of [head, ...table]) process.stdout.write(`${line.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c)).join('  ')}\n`);
  for (const r of rows.filter((x) => x.problems.length)) process.stdout.write(`  ${r.name}: ${r.problems.join('; ')}\n`);
}

function verdict(r: Row): string {
  if (r.verified) return r.pinned ? 'yes (pinned sha256)' : 'yes';
  return r.status === 'partial' ? 'no (partial)' : `no (${r.status})`;
}
