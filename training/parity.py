"""Parity of `cawa generate` with the reference PyTorch port (huggingface/pytorch-pretrained-BigGAN) on random
weights of several BigGAN-deep sizes, in all three checkpoint formats, with non-contiguous weights, at
truncations on and off the 0.02 grid. The reference code is NOT part of this repository: pass the folder of a
checkout (the one holding `pytorch_pretrained_biggan/`) with --reference; it is imported from there, unmodified.

    /usr/bin/python3 training/parity.py --reference /tmp/hfref --work /tmp/cawa-parity [--sizes 64,128,256] [--width 128]

The built-in 128 and 256 configs have the published layouts with narrow channels (channel_width 8 and 4) so that a
run takes minutes; --width 128 gives them the published width (the published BigGAN-deep sizes, ~220 MB each).

For each size it
  1. builds the reference `BigGAN(config)` and fills every parameter and buffer with seeded random values
     (spectral-norm u, v near the top singular vectors, a non-zero attention gamma, so that activations stay in
     tanh's working range and every module matters);
  2. writes the weights three ways: torch.save zip (`model.pth`) and legacy (`pytorch_model.bin`), both with
     every 2-D/4-D weight a TF-layout strided view, u and v offset views into one shared storage, and (legacy)
     biases as step-2 views; and a contiguous `model.safetensors` written from the format description;
  3. reloads the torch files with torch.load, checks they hold exactly the original values (and really are
     non-contiguous), loads them into a fresh reference model with strict=True and runs it in eval mode;
  4. runs `node bin/cawa.js generate --model DIR --classes ... --z z.npy --truncation t --out out.npy` on each
     folder and reports the largest absolute difference;
  5. rewrites the weights with the TypeScript writers (zip and legacy, TF-layout views) and checks that
     torch.load reads them back exactly.
Prints one line per case and writes <work>/parity.json.
"""
import argparse
import collections
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
import types

import numpy as np
import torch

# on the grid (1.0, 0.4, 0.02), next to it (0.14 → row 8, 0.58 → row 28), between rows with coef 0.5 (0.25, 0.37)
# and with asymmetric coefs (0.731, 0.333), where the reference's swapped interpolation weights show
TRUNCATIONS = [1.0, 0.4, 0.02, 0.14, 0.58, 0.25, 0.37, 0.731, 0.333]

F, T = False, True
L128 = [[F, 16, 16], [T, 16, 16], [F, 16, 16], [T, 16, 8], [F, 8, 8], [T, 8, 4], [F, 4, 4], [T, 4, 2], [F, 2, 2], [T, 2, 1]]
L256 = [[F, 16, 16], [T, 16, 16], [F, 16, 16], [T, 16, 8], [F, 8, 8], [T, 8, 8], [F, 8, 8], [T, 8, 4], [F, 4, 4],
        [T, 4, 2], [F, 2, 2], [T, 2, 1]]
CONFIGS = {
    # a custom 64-px model with 10 classes and attention at 16x16
    64: dict(output_dim=64, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=10,
             layers=[[F, 16, 16], [T, 16, 8], [F, 8, 8], [T, 8, 4], [F, 4, 4], [T, 4, 2], [F, 2, 2], [T, 2, 1]],
             attention_layer_position=4, eps=1e-4, n_stats=51),
    # the published 128 and 256 layouts (1000 classes, z_dim 128, attention at 64x64), narrow channels
    128: dict(output_dim=128, z_dim=128, class_embed_dim=128, channel_width=8, num_classes=1000, layers=L128,
              attention_layer_position=8, eps=1e-4, n_stats=51),
    256: dict(output_dim=256, z_dim=128, class_embed_dim=128, channel_width=4, num_classes=1000, layers=L256,
              attention_layer_position=8, eps=1e-4, n_stats=51),
}
# (cawa --classes, the same rows as (index, weight) lists)
CLASSES = {
    10: ('1,4,2:0.3+3:0.7', [[(1, 1.0)], [(4, 1.0)], [(2, 0.3), (3, 0.7)]]),
    1000: ('golden retriever,n02123045,1:0.3+933:0.7', [[(207, 1.0)], [(281, 1.0)], [(1, 0.3), (933, 0.7)]]),
}


def import_reference(root):
    """Import config.py and model.py of the reference package from `root` without running its __init__, whose
    download helpers need boto3/requests/scipy; model.py only uses cached_path in from_pretrained."""
    pkg_dir = os.path.join(root, 'pytorch_pretrained_biggan')
    if not os.path.exists(os.path.join(pkg_dir, 'model.py')):
        sys.exit(f'{pkg_dir}/model.py not found: --reference must be a checkout of huggingface/pytorch-pretrained-BigGAN')
    pkg = types.ModuleType('pytorch_pretrained_biggan')
    pkg.__path__ = [pkg_dir]
    sys.modules['pytorch_pretrained_biggan'] = pkg
    stub = types.ModuleType('pytorch_pretrained_biggan.file_utils')

    def no_download(*_a, **_k):
        raise RuntimeError('parity.py never downloads')
    stub.cached_path = no_download
    sys.modules[stub.__name__] = stub
    mods = {}
    for name in ('config', 'model'):
        spec = importlib.util.spec_from_file_location(f'pytorch_pretrained_biggan.{name}', os.path.join(pkg_dir, f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods['model'].BigGAN, mods['config'].BigGANConfig


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    rn = lambda shape: torch.randn(*shape, generator=g)
    sd = model.state_dict()
    out = collections.OrderedDict()
    for k, t in sd.items():
        if k.endswith('weight_u') or k.endswith('weight_v'):
            continue
        if k.endswith('running_vars'):
            v = 0.5 + rn(t.shape).abs()
        elif k.endswith('running_means'):
            v = 0.2 * rn(t.shape)
        elif k.endswith('.gamma'):
            v = torch.tensor([0.7])
        elif k == 'generator.bn.weight':
            v = 1 + 0.1 * rn(t.shape)
        elif k.endswith('bias'):
            v = 0.05 * rn(t.shape)
        else:
            v = rn(t.shape)
        out[k] = v.float()
        if k.endswith('weight_orig'):
            w = v.reshape(v.shape[0], -1)
            vec = rn((w.shape[1],))
            for _ in range(3):
                u = torch.nn.functional.normalize(w @ vec, dim=0)
                vec = torch.nn.functional.normalize(w.t() @ u, dim=0)
            p = k[: -len('weight_orig')]
            out[p + 'weight_u'] = torch.nn.functional.normalize(w @ vec, dim=0)
            out[p + 'weight_v'] = vec
    return collections.OrderedDict((k, out[k]) for k in sd.keys())


def tf_view(t):
    """Same values, stored as the TF→PT converter leaves them: TF-layout storage, PyTorch-shaped strided view."""
    if t.dim() == 2:
        return torch.from_numpy(np.ascontiguousarray(t.numpy().T)).t()                       # (in,out) storage
    if t.dim() == 4:
        return torch.from_numpy(np.ascontiguousarray(t.numpy().transpose(2, 3, 1, 0))).permute(3, 2, 0, 1)  # HWIO
    return t


def torch_layout(sd, step_biases):
    out = collections.OrderedDict()
    for k, t in sd.items():
        if k.endswith('weight_orig') or k == 'embeddings.weight':
            out[k] = tf_view(t)
        elif k.endswith('weight_u'):
            p = k[: -len('weight_u')]
            shared = torch.cat([t, sd[p + 'weight_v']])                # one storage, two offset views
            out[k] = shared[: t.numel()]
            out[p + 'weight_v'] = shared[t.numel():]
        elif k.endswith('weight_v'):
            continue
        elif step_biases and k.endswith('bias') and t.dim() == 1:
            wide = torch.zeros(2 * t.numel())
            wide[::2] = t
            out[k] = wide[::2]                                           # stride 2
        else:
            out[k] = t
    return collections.OrderedDict((k, out[k]) for k in sd.keys())


def write_safetensors(path, sd):
    header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
    for k, t in sd.items():
        raw = t.contiguous().numpy().astype('<f4').tobytes()
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def read_safetensors(path):
    buf = open(path, 'rb').read()
    n = struct.unpack('<Q', buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for k, e in header.items():
        if k != '__metadata__':
            b, end = e['data_offsets']
            out[k] = torch.from_numpy(np.frombuffer(buf[8 + n + b: 8 + n + end], dtype='<f4').copy()).reshape(e['shape'])
    return out


def same_values(a, b, label):
    assert list(a.keys()) == list(b.keys()) or sorted(a.keys()) == sorted(b.keys()), f'{label}: keys differ'
    for k in a:
        if not torch.equal(a[k].float(), b[k].float()):
            raise SystemExit(f'{label}: {k} differs from the original weights')


def truncnorm_z(rs, n, dim, t):
    """truncnorm(-2, 2) by rejection, times the truncation, float32 (the reference expects z pre-scaled)."""
    out = np.empty(n * dim)
    k = 0
    while k < out.size:
        x = rs.standard_normal(out.size)
        x = x[np.abs(x) <= 2][: out.size - k]
        out[k: k + x.size] = x
        k += x.size
    return (t * out.reshape(n, dim)).astype(np.float32)


def class_rows(rows, num_classes):
    y = np.zeros((len(rows), num_classes), np.float32)
    for i, row in enumerate(rows):
        for c, w in row:
            y[i, c] = np.float32(w)
    return y


def write_npy(path, a):
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


def run_cawa(repo, folder, spec, z_path, t, out_path, threads):
    cmd = [os.environ.get('NODE', 'node'), os.path.join(repo, 'bin', 'cawa.js'), 'generate', '--model', folder,
           '--classes', spec, '--z', z_path, '--truncation', repr(t), '--out', out_path, '--threads', str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'CAWA_NO_PROGRESS': '1'})
    if r.returncode != 0:
        raise SystemExit(f'cawa failed ({" ".join(cmd)}):\n{r.stderr}')
    return np.load(out_path)


OURS_TS = """
import {{ readCheckpoint }} from '{repo}/src/io/checkpoint.ts';
import {{ writeTorchLegacy, writeTorchZip }} from '{repo}/src/io/writers.ts';
const sd = readCheckpoint('{src}');
const entries = [...sd].map(([name, t]) => ({{ name, shape: t.shape, data: t.data }}));
writeTorchZip('{dst}/ours-zip.pth', entries, {{ transposeLayout: true, shareStorage: [] }});
writeTorchLegacy('{dst}/ours-legacy.bin', entries, {{ transposeLayout: true }});
"""


def check_our_writers(repo, st_path, dst, original):
    script = os.path.join(dst, 'write_ours.ts')
    with open(script, 'w') as f:
        f.write(OURS_TS.format(repo=repo, src=st_path, dst=dst))
    r = subprocess.run([os.environ.get('NODE', 'node'), '--import', 'tsx', script], capture_output=True, text=True, cwd=repo)
    if r.returncode != 0:
        raise SystemExit(f'TypeScript writers failed:\n{r.stderr}')
    for name in ('ours-zip.pth', 'ours-legacy.bin'):
        sd = torch.load(os.path.join(dst, name))
        same_values(sd, original, f'torch.load of {name}')
        assert not sd['generator.gen_z.weight_orig'].is_contiguous(), f'{name}: expected TF-layout views'
    return ['ours-zip.pth', 'ours-legacy.bin']


def sensitivity(BigGAN, BigGANConfig, cfg, original, z14, z731, y):
    """How far the output moves under each known trap, to show that a 1e-4 tolerance would catch it:
    ignoring the 0.14 → row 8 quirk, un-swapping the interpolation weights, and reading strided weights linearly."""
    import copy
    import pytorch_pretrained_biggan.model as ref_module
    model = BigGAN(BigGANConfig.from_dict(cfg))
    model.load_state_dict(original, strict=True)
    model.eval()
    out = {}
    with torch.no_grad():
        base14 = model(z14, y, 0.14)
        row7 = copy.deepcopy(model)
        for m in row7.modules():
            if isinstance(m, ref_module.BigGANBatchNorm):
                m.running_means[8] = m.running_means[7].clone()
                m.running_vars[8] = m.running_vars[7].clone()
        out['row 7 instead of row 8 at t=0.14'] = float((row7(z14, y, 0.14) - base14).abs().max())
        base731 = model(z731, y, 0.731)
        forward = ref_module.BigGANBatchNorm.forward

        def unswapped(self, x, truncation, condition_vector=None):   # coef' = 1 - coef: the weights the other way
            coef, start = math.modf(truncation / self.step_size)
            return forward(self, x, (start + 1 - coef) * self.step_size if coef else truncation, condition_vector)
        ref_module.BigGANBatchNorm.forward = unswapped
        try:
            out['interpolation weights un-swapped at t=0.731'] = float((model(z731, y, 0.731) - base731).abs().max())
        finally:
            ref_module.BigGANBatchNorm.forward = forward
        # what a reader that ignores (offset, stride) sees: the TF-layout storage, reshaped as if it were contiguous
        scrambled = collections.OrderedDict()
        for k, t in original.items():
            if k.endswith('weight_orig') or k == 'embeddings.weight':
                tf = t.numpy().T if t.dim() == 2 else t.numpy().transpose(2, 3, 1, 0)
                scrambled[k] = torch.from_numpy(np.ascontiguousarray(tf).reshape(t.shape))
            else:
                scrambled[k] = t
        wrong = BigGAN(BigGANConfig.from_dict(cfg))
        wrong.load_state_dict(scrambled, strict=True)
        wrong.eval()
        d = (wrong(z731, y, 0.731) - base731).abs()
        # NaN (null in parity.json) means destroyed: scrambled weights can make u·Wv vanish
        out['strides ignored (TF-layout storage read linearly)'] = float('nan') if torch.isnan(d).any() else float(d.max())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--reference', required=True, help='checkout of huggingface/pytorch-pretrained-BigGAN')
    ap.add_argument('--work', required=True, help='scratch folder for checkpoints and outputs')
    ap.add_argument('--sizes', default='64,128,256')
    ap.add_argument('--truncations', default=','.join(map(repr, TRUNCATIONS)))
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=2203)
    ap.add_argument('--width', type=int, default=0, help='channel_width for every size (default: the built-in configs)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    BigGAN, BigGANConfig = import_reference(os.path.abspath(a.reference))
    truncations = [float(t) for t in a.truncations.split(',')]
    results = []
    sensitivities = {}
    worst = 0.0
    for size in map(int, a.sizes.split(',')):
        cfg = dict(CONFIGS[size], **({'channel_width': a.width} if a.width else {}))
        base = os.path.join(os.path.abspath(a.work), str(size))
        folders = {f: os.path.join(base, f) for f in ('zip', 'legacy', 'safetensors')}
        for d in [base, *folders.values()]:   # base: config.json beside the TypeScript writers' files
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, 'config.json'), 'w') as f:
                json.dump(cfg, f)
        model = BigGAN(BigGANConfig.from_dict(cfg))
        original = randomize(model, a.seed + size)
        torch.save(torch_layout(original, step_biases=False), os.path.join(folders['zip'], 'model.pth'))
        torch.save(torch_layout(original, step_biases=True), os.path.join(folders['legacy'], 'pytorch_model.bin'),
                   _use_new_zipfile_serialization=False)
        st_path = os.path.join(folders['safetensors'], 'model.safetensors')
        write_safetensors(st_path, original)

        # the reference runs on what torch.load reads back from the legacy file (the published format)
        loaded = {'zip': torch.load(os.path.join(folders['zip'], 'model.pth')),
                  'legacy': torch.load(os.path.join(folders['legacy'], 'pytorch_model.bin')),
                  'safetensors': read_safetensors(st_path)}
        for fmt, sd in loaded.items():
            same_values(sd, original, fmt)
        for fmt in ('zip', 'legacy'):
            sd = loaded[fmt]
            assert not sd['generator.gen_z.weight_orig'].is_contiguous() and not sd['embeddings.weight'].is_contiguous()
            assert sd['generator.gen_z.weight_v'].storage_offset() > 0
        assert loaded['legacy']['generator.gen_z.bias'].stride() == (2,)
        ref_model = BigGAN(BigGANConfig.from_dict(cfg))
        ref_model.load_state_dict(loaded['legacy'], strict=True)
        ref_model.eval()

        extra = check_our_writers(repo, st_path, base, original)
        spec, rows = CLASSES[cfg['num_classes']]
        y = class_rows(rows, cfg['num_classes'])
        for k, t in enumerate(truncations):
            z = truncnorm_z(np.random.RandomState(a.seed + 31 * size + k), len(rows), cfg['z_dim'], t)
            tag = f'{size}-{t!r}'
            z_path = os.path.join(base, f'z-{t!r}.npy')
            write_npy(z_path, z)
            with torch.no_grad():
                ref = ref_model(torch.from_numpy(z), torch.from_numpy(y), t).numpy()
            write_npy(os.path.join(base, f'ref-{t!r}.npy'), ref)
            saturated = float(np.mean(np.abs(ref) > 0.99))
            for fmt, folder in folders.items():
                got = run_cawa(repo, folder, spec, z_path, t, os.path.join(base, f'out-{fmt}-{t!r}.npy'), a.threads)
                assert got.shape == ref.shape, f'{tag} {fmt}: shape {got.shape} vs {ref.shape}'
                d = float(np.max(np.abs(got.astype(np.float64) - ref)))
                worst = max(worst, d)
                results.append({'size': size, 'format': fmt, 'truncation': t, 'max_abs_diff': d,
                                'ref_std': float(ref.std()), 'ref_saturated': saturated})
                print(f'{size:>3} px  {fmt:<11}  t={t!r:<6}  max|Δ| = {d:.3g}   (reference std {ref.std():.3f}, '
                      f'{100 * saturated:.1f}% of values beyond ±0.99)', flush=True)
            if k == 0:
                # the TypeScript writers' files, read by torch.load above, also run through cawa
                for name in extra:
                    got = run_cawa(repo, os.path.join(base, name), spec, z_path, t,
                                   os.path.join(base, f'out-{name}-{t!r}.npy'), a.threads)
                    d = float(np.max(np.abs(got.astype(np.float64) - ref)))
                    worst = max(worst, d)
                    results.append({'size': size, 'format': name, 'truncation': t, 'max_abs_diff': d})
                    print(f'{size:>3} px  {name:<11}  t={t!r:<6}  max|Δ| = {d:.3g}   (TypeScript writer, torch.load reads it back exactly)', flush=True)
        if 0.14 in truncations and 0.731 in truncations:
            zs = {t: torch.from_numpy(np.load(os.path.join(base, f'z-{t!r}.npy'))) for t in (0.14, 0.731)}
            sens = sensitivity(BigGAN, BigGANConfig, cfg, original, zs[0.14], zs[0.731], torch.from_numpy(y))
            for what, d in sens.items():
                moved = 'NaN (output destroyed)' if math.isnan(d) else f'max|Δ| = {d:.3g}'
                print(f'{size:>3} px  sensitivity: {what}: the reference output moves by {moved}', flush=True)
            sensitivities[size] = {k: None if math.isnan(v) else v for k, v in sens.items()}
    with open(os.path.join(a.work, 'parity.json'), 'w') as f:
        json.dump({'worst_max_abs_diff': worst, 'cases': results, 'sensitivity': sensitivities}, f, indent=1)
    print(f'worst max|Δ| over {len(results)} cases: {worst:.3g}')
    if worst > 1e-4:
        sys.exit('parity FAILED: max|Δ| above 1e-4')


if __name__ == '__main__':
    main()
