// `cawa generate` end to end: the contract the acceptance check uses, and clear errors with nothing written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpy, writeNpy } from '../src/io/npy.ts';

const CAWA = new URL('../bin/cawa.js', import.meta.url).pathname;
const FIX = new URL('./fixtures/hf-fixture/', import.meta.url).pathname;

function cawa(args: string[]) {
  const r = spawnSync(process.execPath, [CAWA, ...args], { encoding: 'utf8', env: { ...process.env, CAWA_NO_PROGRESS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function modelFolder(weights = 'model-zip.pth'): string {
  const dir = mkdtempSync(join(tmpdir(), 'cawa-gen-'));
  copyFileSync(join(FIX, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(FIX, weights), join(dir, weights));
  return dir;
}

test('generate --z --classes --truncation --out x.npy reproduces the reference output', () => {
  const dir = modelFolder();
  const out = join(dir, 'out.npy');
  // the fixture's first two samples at truncation 0.4 are one-hot classes 1 and 4
  const z = readNpy(readFileSync(join(FIX, 'z-0.4.npy')));
  writeNpy(join(dir, 'z.npy'), [2, z.shape[1]], z.data.slice(0, 2 * z.shape[1]));
  const r = cawa(['generate', '--model', dir, '--classes', '1,4', '--z', join(dir, 'z.npy'), '--truncation', '0.4', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const got = readNpy(readFileSync(out));
  const ref = readNpy(readFileSync(join(FIX, 'out-0.4.npy')));
  assert.deepEqual(got.shape, [2, 3, 32, 32]);
  let max = 0;
  for (let i = 0; i < got.data.length; i++) max = Math.max(max, Math.abs(got.data[i] - ref.data[i]));
  assert.ok(max <= 1e-4, `max |Δ| ${max}`);
});

test('generate --seed --n writes a PNG grid, reproducibly', () => {
  const dir = modelFolder('model.safetensors');
  const a = cawa(['generate', '--model', dir, '--classes', '0,2', '--seed', '3', '--n', '3', '--out', join(dir, 'a.png')]);
  assert.equal(a.code, 0, a.stderr);
  const b = cawa(['generate', '--model', join(dir, 'model.safetensors'), '--classes', '0,2', '--seed', '3', '--n', '3', '--out', join(dir, 'b.png')]);
  assert.equal(b.code, 0, b.stderr);
  const pa = readFileSync(join(dir, 'a.png'));
  assert.equal(pa.subarray(1, 4).toString(), 'PNG');
  assert.ok(pa.equals(readFileSync(join(dir, 'b.png'))), 'same seed, same picture');
});

test('bad input: clear error, non-zero exit, nothing written', () => {
  const dir = modelFolder();
  const out = join(dir, 'o.npy');
  const zBad = join(dir, 'zbad.npy');
  writeNpy(zBad, [2, 5], new Float32Array(10));
  // Truncated weights live outside `dir`, so `dir` keeps exactly one weight file and every other case
  // fails for the reason it names, not because the folder became ambiguous.
  const full = readFileSync(join(FIX, 'model-zip.pth'));
  const elsewhere = mkdtempSync(join(tmpdir(), 'cawa-cut-'));
  const cut = join(elsewhere, 'cut.pth');
  writeFileSync(cut, full.subarray(0, full.length >> 1));
  // a folder whose only weight file is truncated (legacy format, cut inside the storage data)
  const cutDir = mkdtempSync(join(tmpdir(), 'cawa-cutdir-'));
  copyFileSync(join(FIX, 'config.json'), join(cutDir, 'config.json'));
  const legacy = readFileSync(join(FIX, 'model-legacy.pth'));
  writeFileSync(join(cutDir, 'pytorch_model.bin'), legacy.subarray(0, legacy.length - 100));
  const noConfig = mkdtempSync(join(tmpdir(), 'cawa-nocfg-'));
  copyFileSync(join(FIX, 'model.safetensors'), join(noConfig, 'model.safetensors'));
  const cases: [string[], RegExp][] = [
    [['--model', join(dir, 'missing')], /neither a folder, a weights file, nor a downloaded model/],
    [['--model', noConfig], /no config\.json/],
    [['--model', dir, '--weights', join(dir, 'missing.pth')], /weights file .* does not exist/],
    [['--model', dir, '--weights', cut], /truncat|damaged|unexpected end/i],
    [['--model', cutDir], /truncated: expected \d+ bytes of data/],
    [['--model', dir, '--classes', 'no-such-class'], /unknown class "no-such-class"/],
    [['--model', dir, '--classes', '7'], /class 7 out of range \[0, 4\]/],
    [['--model', dir, '--truncation', '0'], /\(0, 1\]/],
    [['--model', dir, '--truncation', '1.5'], /\(0, 1\]/],
    [['--model', dir, '--z', zBad, '--classes', '0'], /shape \[N, 8\]/],
    [['--model', dir, '--z', join(dir, 'missing-z.npy'), '--classes', '0'], /--z file .*missing-z\.npy does not exist/],
  ];
  for (const [args, re] of cases) {
    const r = cawa(['generate', ...args, '--out', out]);
    assert.notEqual(r.code, 0, `${args.join(' ')} should fail`);
    assert.match(r.stderr, re, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(!existsSync(out), `${args.join(' ')} must not write ${out}`);
  }
  // the folder itself is still a valid model: the failures above came from the arguments
  assert.equal(cawa(['generate', '--model', dir, '--classes', '0', '--out', out]).code, 0);
  rmSync(out);
  // a config for another model: the error names the first key that differs
  const cfg = JSON.parse(readFileSync(join(FIX, 'config.json'), 'utf8'));
  cfg.channel_width = 8;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const r = cawa(['generate', '--model', dir, '--out', out]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /config does not match weights: generator\.gen_z\.bias/);
  assert.ok(!existsSync(out));
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), [], 'no temporary files left behind');
});
