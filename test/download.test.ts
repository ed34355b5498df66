// `cawa download` and the model cache against a loopback HTTP server started here: no test touches the
// network. Covers complete, interrupted-and-resumed, corrupt, missing and refused downloads, two downloads
// of one model at once, a damaged entry fetched again, and `cawa generate --model <name>` from the cache.
import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheHome, checkEntry, entryPath, listCachedModels, lockPath, readManifest, resolveCachedModel, stagingPath } from '../src/io/cache.ts';
import { DownloadError, HttpStatusError, downloadModel, fetchToFile, type DownloadEvent } from '../src/io/download.ts';
import { readNpy } from '../src/io/npy.ts';
import { checkUrl, entryNameFor, resolveSources } from '../src/io/registry.ts';

const CAWA = new URL('../bin/cawa.js', import.meta.url).pathname;
const FIX = new URL('./fixtures/hf-fixture/', import.meta.url).pathname;
const CONFIG = readFileSync(join(FIX, 'config.json'));
const WEIGHTS = readFileSync(join(FIX, 'model.safetensors'));
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// ------------------------------------------------------------------------------------- test server

interface Route {
  body: Buffer;
  etag?: string;
  /** answer this status instead of the body */
  status?: number;
  /** per request (in order): close the connection after this many body bytes; undefined = send it all */
  cut?: (number | undefined)[];
  /** per request: send this many body bytes, then nothing more while keeping the connection open */
  stall?: (number | undefined)[];
  /** send the body in 16 KiB chunks this far apart (to make two downloads overlap) */
  chunkDelayMs?: number;
  redirect?: string;
  headers?: Record<string, string>;
  served?: number;
}

interface Hit {
  path: string;
  range?: string;
  ifRange?: string;
}

class TestServer {
  routes = new Map<string, Route>();
  hits: Hit[] = [];
  private server = http.createServer((req, res) => void this.handle(req, res));

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  get base(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  url(p: string): string {
    return this.base + p;
  }

  /** The tiny model under `/<dir>/`, as a Hub-like folder (config.json + model.safetensors). */
  serveModel(dir: string, extra: Partial<Route> = {}): void {
    this.routes.set(`/${dir}/config.json`, { body: CONFIG, etag: `"c-${sha(CONFIG).slice(0, 8)}"` });
    this.routes.set(`/${dir}/model.safetensors`, { body: WEIGHTS, etag: `"w-${sha(WEIGHTS).slice(0, 8)}"`, ...extra });
  }

  hitsFor(p: string): Hit[] {
    return this.hits.filter((h) => h.path === p);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const range = req.headers.range;
    const ifRange = req.headers['if-range'] as string | undefined;
    this.hits.push({ path, range, ifRange });
    const route = this.routes.get(path);
    if (!route) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    const n = (route.served = (route.served ?? 0) + 1) - 1;
    if (route.status) return void res.writeHead(route.status).end('nope');
    if (route.redirect) return void res.writeHead(302, { location: route.redirect, ...route.headers }).end();
    const len = route.body.length;
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', ...(route.etag ? { etag: route.etag } : {}) };
    let start = 0;
    let status = 200;
    const m = range?.match(/^bytes=(\d+)-$/);
    if (m && (!ifRange || ifRange === route.etag)) {
      start = Number(m[1]);
      if (start >= len) return void res.writeHead(416, { ...headers, 'content-range': `bytes */${len}` }).end();
      status = 206;
      headers['content-range'] = `bytes ${start}-${len - 1}/${len}`;
    }
    const body = route.body.subarray(start);
    res.writeHead(status, { ...headers, 'content-length': body.length });
    const cut = route.cut?.[n];
    if (cut !== undefined) {
      res.write(body.subarray(0, cut));
      await sleep(30); // let the bytes reach the client, then drop the connection mid-body
      return void req.socket.destroy();
    }
    const stall = route.stall?.[n];
    if (stall !== undefined) return void res.write(body.subarray(0, stall));
    if (!route.chunkDelayMs) return void res.end(body);
    for (let off = 0; off < body.length; off += 16384) {
      if (!res.write(body.subarray(off, off + 16384))) await new Promise((r) => res.once('drain', r));
      await sleep(route.chunkDelayMs);
    }
    res.end();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const server = new TestServer();
let home = '';

before(() => server.start());
after(() => server.stop());
beforeEach(() => {
  server.routes.clear();
  server.hits = [];
  home = mkdtempSync(join(tmpdir(), 'cawa-home-'));
  process.env.CAWA_HOME = home;
  delete process.env.CAWA_REGISTRY;
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

/** A CAWA_REGISTRY file naming `name` → the tiny model served under `/<dir>/`. */
function registry(name: string, dir: string, pins: { config?: string; weights?: string } = {}): string {
  const file = join(home, 'registry.json');
  const files = [
    { name: 'config.json', url: server.url(`/${dir}/config.json`), ...(pins.config ? { sha256: pins.config } : {}) },
    { name: 'model.safetensors', url: server.url(`/${dir}/model.safetensors`), ...(pins.weights ? { sha256: pins.weights } : {}) },
  ];
  writeFileSync(file, JSON.stringify({ [name]: { files } }));
  return file;
}

const fast = { retries: 0, backoffMs: 1 };

/** Run the CLI asynchronously: the test server lives in this process and must keep answering. */
function cawa(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CAWA, ...args], { env: { ...process.env, CAWA_NO_PROGRESS: '1', ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** What the staging area holds besides lock files (should be nothing after a finished download). */
function stagingLeftovers(): string[] {
  const root = join(home, 'models', '.downloads');
  return existsSync(root) ? readdirSync(root).filter((f) => f !== '.trash') : [];
}

// ------------------------------------------------------------------------------------------ tests

test('cache home follows platform conventions; CAWA_HOME overrides', () => {
  assert.equal(cacheHome({}, 'linux', '/home/u'), '/home/u/.cache/channel-awareness');
  assert.equal(cacheHome({ XDG_CACHE_HOME: '/x/cache' }, 'linux', '/home/u'), '/x/cache/channel-awareness');
  assert.equal(cacheHome({ XDG_CACHE_HOME: 'relative' }, 'linux', '/home/u'), '/home/u/.cache/channel-awareness');
  assert.equal(cacheHome({}, 'darwin', '/Users/u'), '/Users/u/Library/Caches/channel-awareness');
  assert.equal(cacheHome({ LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, 'win32', 'C:\\Users\\u'), 'C:\\Users\\u\\AppData\\Local\\channel-awareness');
  assert.equal(cacheHome({ CAWA_HOME: '/opt/cawa', XDG_CACHE_HOME: '/x' }, 'linux', '/home/u'), '/opt/cawa');
});

test('known names map to the reference S3 files, then the Hub mirror; URLs and owner/repo are accepted', () => {
  const [s3, hub] = resolveSources('biggan-deep-128', { env: {} });
  assert.deepEqual(s3.files.map((f) => f.url), [
    'https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-128-config.json',
    'https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-128-pytorch_model.bin',
  ]);
  assert.equal(hub.kind, 'hub');
  assert.equal(hub.files[1].url, 'https://huggingface.co/osanseviero/BigGAN-deep-128/resolve/main/pytorch_model.bin');
  assert.equal(hub.files[1].sha256, 'b86146a8cfcde4cda135adba4b2806f78b3abe2dac9d0fd090cc3ab318604ad9');
  assert.equal(resolveSources('BigGAN-deep-512', { env: {} }).length, 1, 'no Hub mirror is known for 512');
  // the S3 address of a known model lands in the known model's entry, so `--model biggan-deep-256` finds it
  assert.equal(entryNameFor('https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-256-pytorch_model.bin', {}), 'biggan-deep-256');
  assert.equal(entryNameFor('someone/BigGAN-deep-256', {}), 'someone--BigGAN-deep-256');
  const [bin, st] = resolveSources('someone/BigGAN-deep-256', { env: {} });
  assert.deepEqual([bin.files[1].name, st.files[1].name], ['pytorch_model.bin', 'model.safetensors']);
  // a folder address: the files sit inside it, at the host root too, and keep the folder's query
  assert.deepEqual(resolveSources('https://example.com/', { env: {}, name: 'x' })[0].files.map((f) => f.url), [
    'https://example.com/config.json',
    'https://example.com/pytorch_model.bin',
  ]);
  assert.deepEqual(resolveSources('https://example.com/m/config.json?download=true#top', { env: {}, name: 'x' })[1].files.map((f) => f.url), [
    'https://example.com/m/config.json?download=true',
    'https://example.com/m/model.safetensors?download=true',
  ]);
  assert.throws(() => checkUrl('http://example.com/x.bin', {}), /refusing plain http/);
  assert.throws(() => resolveSources('no-such-model', { env: {} }), /unknown model "no-such-model"/);
});

test('a complete download: staged, verified, renamed into place, nothing left over', async () => {
  server.serveModel('tiny');
  const r = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  assert.equal(r.reused, false);
  assert.equal(r.path, entryPath('tiny'));
  assert.ok(readFileSync(join(r.path, 'model.safetensors')).equals(WEIGHTS));
  assert.ok(readFileSync(join(r.path, 'config.json')).equals(CONFIG));
  const m = readManifest(r.path)!;
  assert.equal(m.complete, true);
  assert.equal(m.files['model.safetensors'].sha256, sha(WEIGHTS));
  assert.equal(m.files['model.safetensors'].size, WEIGHTS.length);
  assert.deepEqual(readdirSync(r.path).sort(), ['config.json', 'manifest.json', 'model.safetensors']);
  assert.equal(checkEntry('tiny').status, 'ok');
  assert.deepEqual(stagingLeftovers(), [], 'no staging folder, .part or lock left');
  // the folder had no pytorch_model.bin (404), so the safetensors fallback was used
  assert.equal(server.hitsFor('/tiny/pytorch_model.bin').length, 1);
  // a second call reuses the verified entry and fetches nothing
  const again = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  assert.equal(again.reused, true);
  assert.equal(server.hitsFor('/tiny/model.safetensors').length, 1);
  assert.equal(resolveCachedModel('tiny'), r.path);
});

test('an interrupted download keeps its bytes and the next run resumes with a Range request', async () => {
  server.serveModel('tiny', { cut: [100_000] });
  await assert.rejects(downloadModel(server.url('/tiny/model.safetensors'), { ...fast, name: 'tiny' }), (e: unknown) => {
    assert.ok(e instanceof DownloadError && e.kind === 'interrupted', String(e));
    assert.match((e as Error).message, /run the command again to resume/);
    return true;
  });
  assert.equal(existsSync(entryPath('tiny')), false, 'no entry from a partial download');
  const part = join(stagingPath('tiny'), 'model.safetensors.part');
  assert.equal(statSync(part).size, 100_000);
  assert.equal(resolveCachedModel('tiny'), undefined);
  assert.equal(listCachedModels().partial[0]?.name, 'tiny');

  // by name alone: the staging manifest remembers the addresses given with --name
  const r = await downloadModel('tiny', fast);
  const hits = server.hitsFor('/tiny/model.safetensors');
  assert.equal(hits.length, 2);
  assert.equal(hits[1].range, 'bytes=100000-');
  assert.equal(hits[1].ifRange, server.routes.get('/tiny/model.safetensors')!.etag, 'If-Range guards against a changed file');
  assert.equal(server.hitsFor('/tiny/config.json').length, 1, 'the finished config was kept, not fetched again');
  assert.ok(readFileSync(join(r.path, 'model.safetensors')).equals(WEIGHTS));
  assert.equal(r.manifest.files['model.safetensors'].sha256, sha(WEIGHTS));
  assert.deepEqual(stagingLeftovers(), []);
});

test('a server that closes the connection mid-way: retried within the run, resumed from where it broke', async () => {
  server.serveModel('tiny', { cut: [50_000, 120_000] });
  const retries: DownloadEvent[] = [];
  const r = await downloadModel(server.url('/tiny/'), { retries: 3, backoffMs: 1, name: 'tiny', onEvent: (e) => e.type === 'retry' && retries.push(e) });
  assert.equal(retries.length, 2);
  const ranges = server.hitsFor('/tiny/model.safetensors').map((h) => h.range);
  assert.deepEqual(ranges, [undefined, 'bytes=50000-', 'bytes=170000-']);
  assert.ok(readFileSync(join(r.path, 'model.safetensors')).equals(WEIGHTS));
});

test('a server that stops sending is given up on after the idle timeout and resumed', async () => {
  server.serveModel('tiny', { stall: [80_000] });
  const r = await downloadModel(server.url('/tiny/model.safetensors'), { retries: 1, backoffMs: 1, idleTimeoutMs: 300, name: 'tiny' });
  assert.deepEqual(server.hitsFor('/tiny/model.safetensors').map((h) => h.range), [undefined, 'bytes=80000-']);
  assert.ok(readFileSync(join(r.path, 'model.safetensors')).equals(WEIGHTS));
});

test('a resume whose file changed upstream (If-Range mismatch) starts over and still verifies', async () => {
  server.serveModel('tiny', { cut: [100_000] });
  await assert.rejects(downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' }));
  const route = server.routes.get('/tiny/model.safetensors')!;
  route.etag = '"new-version"';
  const r = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  assert.ok(readFileSync(join(r.path, 'model.safetensors')).equals(WEIGHTS));
});

test('a .part that already holds every byte (crash before the rename) completes on a 416', async () => {
  server.serveModel('tiny');
  const dest = join(home, 'w.bin');
  writeFileSync(`${dest}.part`, WEIGHTS);
  writeFileSync(`${dest}.part.json`, JSON.stringify({ url: server.url('/tiny/model.safetensors') }));
  const got = await fetchToFile(server.url('/tiny/model.safetensors'), dest, { expectedSha256: sha(WEIGHTS), retries: 0 });
  assert.equal(got.sha256, sha(WEIGHTS));
  assert.equal(got.resumedFrom, WEIGHTS.length);
  assert.equal(server.hits[0].range, `bytes=${WEIGHTS.length}-`);
  assert.ok(readFileSync(dest).equals(WEIGHTS));
});

test('a wrong checksum: error, the download is deleted, nothing enters the cache', async () => {
  server.serveModel('tiny');
  process.env.CAWA_REGISTRY = registry('tiny', 'tiny', { weights: '0'.repeat(64) });
  await assert.rejects(downloadModel('tiny', fast), (e: unknown) => {
    assert.ok(e instanceof DownloadError && e.kind === 'checksum', String(e));
    assert.match((e as Error).message, /checksum mismatch for model\.safetensors .*expected 0{64}/);
    return true;
  });
  assert.equal(existsSync(entryPath('tiny')), false);
  assert.deepEqual(stagingLeftovers(), []);
});

test('a known name falls back from S3 (404) to the Hub mirror, whose published SHA-256 is enforced', async () => {
  // a "Hub" that redirects to its CDN with the LFS digest in X-Linked-Etag, as huggingface.co does
  server.routes.set('/osanseviero/BigGAN-deep-128/resolve/main/config.json', { body: CONFIG });
  server.routes.set('/osanseviero/BigGAN-deep-128/resolve/main/pytorch_model.bin', { body: Buffer.alloc(0), redirect: server.url('/cdn/w') });
  server.routes.set('/cdn/w', { body: WEIGHTS });
  const events: DownloadEvent[] = [];
  const env = { ...process.env, CAWA_S3_BASE: server.url('/s3'), HF_ENDPOINT: server.base };
  await assert.rejects(downloadModel('biggan-deep-128', { ...fast, env, onEvent: (e) => events.push(e) }), /checksum mismatch for pytorch_model\.bin.*b86146a8/);
  assert.ok(events.some((e) => e.type === 'fallback'), 'S3 404 moved on to the Hub');
  assert.equal(server.hitsFor('/s3/biggan-deep-128-config.json').length, 1);
  assert.equal(existsSync(entryPath('biggan-deep-128')), false);

  // any Hub repo: the X-Linked-Etag digest is checked and recorded as pinned
  server.routes.set('/someone/tiny/resolve/main/config.json', { body: CONFIG });
  server.routes.set('/someone/tiny/resolve/main/pytorch_model.bin', {
    body: Buffer.alloc(0),
    redirect: server.url('/cdn/w'),
    headers: { 'x-linked-etag': `"${sha(WEIGHTS)}"`, 'x-linked-size': String(WEIGHTS.length) },
  });
  const ok = await downloadModel('someone/tiny', { ...fast, env });
  assert.equal(ok.name, 'someone--tiny');
  assert.equal(ok.manifest.files['pytorch_model.bin'].pinned, true);
  server.routes.get('/someone/tiny/resolve/main/pytorch_model.bin')!.headers!['x-linked-etag'] = `"${'1'.repeat(64)}"`;
  await assert.rejects(downloadModel('someone/tiny', { ...fast, env, force: true, name: 'other' }), /checksum mismatch/);
});

test('a 404: clear error naming the status, nothing left in the cache', async () => {
  await assert.rejects(downloadModel(server.url('/missing/pytorch_model.bin'), fast), (e: unknown) => {
    assert.ok(e instanceof HttpStatusError && e.status === 404, String(e));
    assert.match((e as Error).message, /server answered 404 Not Found for http:\/\/127\.0\.0\.1:\d+\/missing\/config\.json/);
    return true;
  });
  assert.equal(existsSync(entryPath('missing')), false);
  assert.deepEqual(stagingLeftovers(), []);
});

test('offline (connection refused): clear error, non-zero exit, nothing in the cache', async () => {
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const url = `http://127.0.0.1:${port}/tiny/`;
  await assert.rejects(downloadModel(url, fast), (e: unknown) => e instanceof DownloadError && e.kind === 'offline');
  const r = await cawa(['download', url, '--json']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cawa: cannot reach 127\.0\.0\.1:\d+ \(connection refused, ECONNREFUSED\): are you offline\?/);
  assert.equal(JSON.parse(r.stdout).kind, 'offline');
  assert.deepEqual(readdirSync(join(home, 'models')).filter((f) => f !== '.downloads'), []);
  assert.deepEqual(stagingLeftovers(), []);
});

test('two downloads of the same model at once: one fetches, the other waits and reuses; both valid', async () => {
  server.serveModel('tiny', { chunkDelayMs: 5 });
  const events: DownloadEvent[] = [];
  const opts = { ...fast, name: 'tiny', lock: { pollMs: 20 }, onEvent: (e: DownloadEvent) => events.push(e) };
  const [a, b] = await Promise.all([downloadModel(server.url('/tiny/'), opts), downloadModel(server.url('/tiny/'), opts)]);
  assert.deepEqual([a.reused, b.reused].sort(), [false, true]);
  assert.ok(events.some((e) => e.type === 'waiting'));
  assert.equal(server.hitsFor('/tiny/model.safetensors').length, 1, 'the weights were fetched once');
  assert.equal(a.path, b.path);
  assert.equal(checkEntry('tiny').status, 'ok');

  // the same across processes: two `cawa download` at once, both exit 0 with one valid entry
  rmSync(join(home, 'models'), { recursive: true });
  server.hits = [];
  server.routes.get('/tiny/model.safetensors')!.chunkDelayMs = 60; // ~1.5 s, so the two processes overlap
  const [p, q] = await Promise.all([cawa(['download', server.url('/tiny/'), '--name', 'tiny', '--json']), cawa(['download', server.url('/tiny/'), '--name', 'tiny', '--json'])]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(q.code, 0, q.stderr);
  assert.deepEqual([JSON.parse(p.stdout).reused, JSON.parse(q.stdout).reused].sort(), [false, true]);
  assert.equal(server.hitsFor('/tiny/model.safetensors').length, 1);
  assert.ok(readFileSync(join(entryPath('tiny'), 'model.safetensors')).equals(WEIGHTS));
  assert.equal(existsSync(lockPath('tiny')), false);
});

test('a lock left by a dead process does not block a download', async () => {
  server.serveModel('tiny');
  mkdirSync(join(home, 'models', '.downloads'), { recursive: true });
  writeFileSync(lockPath('tiny'), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), token: 'x', startedAt: '' }));
  const r = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny', lock: { pollMs: 10 } });
  assert.equal(r.reused, false);
  assert.equal(existsSync(lockPath('tiny')), false);
});

test('a corrupt cache entry is detected, never used, and fetched again', async () => {
  server.serveModel('tiny');
  const { path: dir } = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  const w = join(dir, 'model.safetensors');

  // same size, different bytes: the mtime moved, so even the cheap check rehashes and refuses it
  const bad = Buffer.from(WEIGHTS);
  bad[1000] ^= 0xff;
  writeFileSync(w, bad);
  assert.throws(() => resolveCachedModel('tiny'), /downloaded model "tiny" .* is damaged .*model\.safetensors: sha256/);
  const events: DownloadEvent[] = [];
  const r = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny', onEvent: (e) => events.push(e) });
  assert.equal(r.reused, false);
  assert.ok(events.some((e) => e.type === 'damaged'));
  assert.ok(events.some((e) => e.type === 'kept' && e.file === 'config.json'), 'the intact config was kept');
  assert.ok(readFileSync(w).equals(WEIGHTS));
  assert.equal(resolveCachedModel('tiny'), dir);

  // bit rot that keeps size and mtime: only a full hash sees it, and `cawa download` does one
  writeFileSync(w, bad);
  const m = readManifest(dir)!;
  m.files['model.safetensors'].mtimeMs = statSync(w).mtimeMs; // as if the bytes rotted without a write
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
  assert.equal(checkEntry('tiny').status, 'ok', 'the cheap check cannot tell');
  const again = await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  assert.equal(again.reused, false);
  assert.ok(readFileSync(w).equals(WEIGHTS));

  // truncated: the size alone condemns it
  writeFileSync(w, WEIGHTS.subarray(0, 1000));
  assert.equal(checkEntry('tiny').status, 'damaged');
  assert.throws(() => resolveCachedModel('tiny'), /damaged \(model\.safetensors: 1000 bytes, expected \d+\)/);
  await downloadModel(server.url('/tiny/'), { ...fast, name: 'tiny' });
  assert.equal(checkEntry('tiny').status, 'ok');
  assert.equal(server.hitsFor('/tiny/config.json').length, 1, 'the config was never fetched again');
});

test('cawa download → cawa models → cawa generate --model <name> runs from the cache', async () => {
  server.serveModel('tiny');
  const env = { CAWA_REGISTRY: registry('tiny-biggan', 'tiny', { weights: sha(WEIGHTS), config: sha(CONFIG) }) };
  // with the progress bar on (stderr is not a terminal here, so it prints plain lines)
  const d = await cawa(['download', 'tiny-biggan'], { ...env, CAWA_NO_PROGRESS: '' });
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stderr, /model\.safetensors \[.*\] 100% \| 386\.\d KiB \/ 386\.\d KiB \| .* \| ETA/);
  assert.match(d.stderr, /tiny-biggan: downloaded and verified/);

  const ls = await cawa(['models', '--json'], env);
  assert.equal(ls.code, 0, ls.stderr);
  const rows = JSON.parse(ls.stdout);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].name, 'tiny-biggan');
  assert.equal(rows[0].verified, true);
  assert.equal(rows[0].pinned, true);
  assert.equal(rows[0].size, CONFIG.length + WEIGHTS.length);
  assert.equal(rows[0].path, entryPath('tiny-biggan'));
  const table = await cawa(['models'], env);
  assert.match(table.stdout, /tiny-biggan\s+[\d.]+ KiB\s+yes \(pinned sha256\)\s+\S+tiny-biggan/);

  // the server is not needed any more: generate reads the cached files only
  server.routes.clear();
  const hitsBefore = server.hits.length;
  const out = join(home, 'x.npy');
  const g = await cawa(['generate', '--model', 'tiny-biggan', '--classes', '0', '--seed', '1', '--out', out], env);
  assert.equal(g.code, 0, g.stderr);
  const ref = join(home, 'ref.npy');
  const direct = await cawa(['generate', '--model', join(FIX, 'model.safetensors'), '--classes', '0', '--seed', '1', '--out', ref]);
  assert.equal(direct.code, 0, direct.stderr);
  assert.ok(readFileSync(out).equals(readFileSync(ref)), 'same output as the fixture model itself');
  assert.equal(server.hits.length, hitsBefore, 'generate made no request');

  // an HTTP error from the CLI: message, exit code 1, JSON on request, nothing cached
  const e404 = await cawa(['download', server.url('/gone/'), '--json'], env);
  assert.equal(e404.code, 1);
  assert.match(e404.stderr, /cawa: server answered 404 Not Found for http:\/\/127\.0\.0\.1:\d+\/gone\//);
  assert.equal(JSON.parse(e404.stdout).kind, 'http');
  assert.equal(existsSync(entryPath('gone')), false);
});

test('cawa download biggan-deep-256 (S3 address on loopback) → cawa generate --model biggan-deep-256 matches the reference port', async () => {
  // the published layout: <prefix>-config.json and a legacy torch.save pytorch_model.bin with TF-layout strided views
  const legacy = readFileSync(join(FIX, 'model-legacy.pth'));
  server.routes.set('/s3/biggan-deep-256-config.json', { body: CONFIG });
  server.routes.set('/s3/biggan-deep-256-pytorch_model.bin', { body: legacy, etag: '"legacy"' });
  const env = { CAWA_S3_BASE: server.url('/s3') };
  const d = await cawa(['download', 'biggan-deep-256'], env);
  assert.equal(d.code, 0, d.stderr);
  assert.ok(readFileSync(join(entryPath('biggan-deep-256'), 'pytorch_model.bin')).equals(legacy));
  const ls = JSON.parse((await cawa(['models', '--json'], env)).stdout);
  assert.deepEqual(ls.map((r: { name: string; verified: boolean; pinned: boolean }) => [r.name, r.verified, r.pinned]), [['biggan-deep-256', true, false]]);

  // z and classes of a committed reference case (rows: class 1, class 4, 0.3·class 0 + 0.7·class 2)
  const hits = server.hits.length;
  const out = join(home, 'out.npy');
  const g = await cawa(['generate', '--model', 'biggan-deep-256', '--classes', '1,4,0:0.3+2:0.7', '--z', join(FIX, 'z-0.4.npy'), '--truncation', '0.4', '--out', out]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(server.hits.length, hits, 'generate made no request');
  const got = readNpy(readFileSync(out));
  const ref = readNpy(readFileSync(join(FIX, 'out-0.4.npy')));
  assert.deepEqual(got.shape, ref.shape);
  let worst = 0;
  for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(got.data[i] - ref.data[i]));
  assert.ok(worst <= 1e-4, `max |Δ| to the reference port ${worst}`);

  // a damaged cached file is refused by generate (clear error, non-zero exit, nothing written), never used
  const w = join(entryPath('biggan-deep-256'), 'pytorch_model.bin');
  writeFileSync(w, legacy.subarray(0, legacy.length - 10));
  const bad = join(home, 'bad.npy');
  const r = await cawa(['generate', '--model', 'biggan-deep-256', '--classes', '1', '--z', join(FIX, 'z-0.4.npy'), '--truncation', '0.4', '--out', bad]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /damaged/);
  assert.equal(existsSync(bad), false);
});
