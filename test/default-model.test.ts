// The shipped default model: the TypeScript engine must reproduce the PyTorch training code's own output
// (test/fixtures/fmnist, written by training/export.py together with the shipped weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readNpy } from '../src/io/npy.ts';
import { Generator } from '../src/model/generator.ts';
import { loadModel } from '../src/model/load.ts';

const REF = new URL('./fixtures/fmnist/', import.meta.url).pathname;

test('the shipped model loads by default and matches the PyTorch training code to 1e-4', async (t) => {
  const model = loadModel();
  assert.equal(model.config.num_classes, 10);
  assert.deepEqual(model.labels?.slice(0, 2), ['T-shirt/top', 'Trouser']);
  const g = await Generator.create(model.config, model.stateDict, { threads: 1 });
  const ref = JSON.parse(readFileSync(join(REF, 'reference.json'), 'utf8')) as { classes: number[]; truncations: number[] };
  const n = ref.classes.length;
  const y = new Float32Array(n * 10);
  ref.classes.forEach((c, i) => (y[i * 10 + c] = 1));
  for (const tr of ref.truncations) {
    const tag = String(tr).replace('.', 'p');
    const z = readNpy(readFileSync(join(REF, `z-t${tag}.npy`)));
    const out = readNpy(readFileSync(join(REF, `out-t${tag}.npy`)));
    const { images } = await g.forward(g.conditioning(z.data, y, n), { truncation: tr });
    let max = 0;
    for (let i = 0; i < images.length; i++) max = Math.max(max, Math.abs(images[i] - out.data[i]));
    t.diagnostic(`truncation ${tr}: max |Δ| ${max.toExponential(2)} over ${images.length} values`);
    assert.ok(max <= 1e-4, `truncation ${tr}: max |Δ| ${max}`);
  }
  await g.release();
});
