// Peak memory of reading a published-size checkpoint (BigGAN-deep-256 layout, 223 MiB, non-contiguous
// TF-layout views) in each format, measured in a fresh child process per format (VmHWM).
//   npm run bench:load
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const child = process.argv[2] === '--child';
const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

if (child) {
  const { readCheckpoint } = await import('../src/io/checkpoint.ts');
  const before = hwm();
  const t0 = performance.now();
  const sd = readCheckpoint(process.argv[3]);
  const ms = performance.now() - t0;
  let n = 0;
  for (const t of sd.values()) n += t.data.length;
  console.log(JSON.stringify({ before, peak: hwm(), ms, values: n }));
} else {
  const { publishedConfig, randomStateDict } = await import('../src/model/random.ts');
  const { writeSafetensors, writeTorchLegacy, writeTorchZip } = await import('../src/io/writers.ts');
  const dir = mkdtempSync(join(tmpdir(), 'cawa-bench-load-'));
  try {
    const sd = randomStateDict(publishedConfig(256), 1);
    const entries = [...sd].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
    const files = {
      'legacy (.bin)': join(dir, 'legacy.bin'),
      'zip (.pth)': join(dir, 'zip.pth'),
      safetensors: join(dir, 'model.safetensors'),
    };
    writeTorchLegacy(files['legacy (.bin)'], entries, { transposeLayout: true });
    writeTorchZip(files['zip (.pth)'], entries, { transposeLayout: true });
    writeSafetensors(files.safetensors, entries);
    for (const [name, file] of Object.entries(files)) {
      const size = statSync(file).size / 2 ** 20;
      const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', file], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
      const m = JSON.parse(r.stdout) as { before: number; peak: number; ms: number };
      const used = m.peak - m.before;
      console.log(`${name.padEnd(14)} ${size.toFixed(0)} MiB file: read in ${(m.ms / 1000).toFixed(2)} s, peak memory +${used.toFixed(0)} MiB = ${(used / size).toFixed(2)}× the file`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
