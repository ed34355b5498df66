"""Turn a training run into the shipped model: refine spectral-norm vectors, compute the 51
truncation-indexed "standing statistics", and write models/fmnist/{config.json, model.safetensors,
classes.json} plus a small reference output that the TypeScript engine must reproduce.

  /usr/bin/python3 training/export.py --run training/runs/main --out models/fmnist
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

import fmnist
from biggan_deep import BigGAN
from train import truncated_normal, one_hot


@torch.no_grad()
def refine_spectral_norm(model, iters=50):
    """EMA averaging leaves (u, v) slightly off the averaged weights; converge them so that the eval-mode
    sigma = u . W v is the top singular value of the weights we ship."""
    for name, mod in model.named_modules():
        if hasattr(mod, 'weight_orig') and hasattr(mod, 'weight_u'):
            w = mod.weight_orig.reshape(mod.weight_orig.shape[0], -1)
            u, v = mod.weight_u, mod.weight_v
            for _ in range(iters):
                v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-4))
                u.copy_(F.normalize(w @ v, dim=0, eps=1e-4))


@torch.no_grad()
def standing_stats(model, batches=2, per_class=50, seed=0):
    """Row k of every BN's running_means/vars = population statistics of its input when z is sampled at
    truncation k/50 (z = truncation * truncnorm(-2, 2)) with classes drawn uniformly."""
    gen = torch.Generator().manual_seed(seed)
    bns = model.bns()
    n_stats = bns[0].running_means.shape[0]
    y = torch.arange(model.cfg['num_classes']).repeat_interleave(per_class)
    for k in range(n_stats):
        t = k / (n_stats - 1)
        for bn in bns:
            bn.collect = []
        for _ in range(batches):
            z = t * truncated_normal((len(y), model.cfg['z_dim']), gen)
            model(z, one_hot(y, model.cfg['num_classes']), 1.0)
        for bn in bns:
            means = torch.stack([m for m, _ in bn.collect])
            vars_ = torch.stack([v for _, v in bn.collect])
            mean = means.mean(0)
            var = vars_.mean(0) + ((means - mean) ** 2).mean(0)   # pooled over batches
            bn.running_means[k] = mean.float()
            bn.running_vars[k] = var.float()
            bn.collect = None
        if k % 10 == 0:
            print(f'standing statistics: truncation {t:.2f} done', flush=True)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.detach().contiguous().float().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header['__metadata__'] = {'format': 'pt'}
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(len(h).to_bytes(8, 'little'))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def save_npy(path, arr):
    np.save(path + '.tmp.npy', arr)
    os.replace(path + '.tmp.npy', path)


@torch.no_grad()
def reference_outputs(model, out_dir):
    """A few samples through the eval-mode PyTorch model; the TypeScript test must match them to 1e-4."""
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    classes = [0, 3, 5, 9]
    for t in [1.0, 0.5, 0.37]:
        z = (t * truncated_normal((len(classes), model.cfg['z_dim']), gen)).float()
        x = model(z, one_hot(torch.tensor(classes), model.cfg['num_classes']), t)
        tag = f'{t:g}'.replace('.', 'p')
        save_npy(os.path.join(out_dir, f'z-t{tag}.npy'), z.numpy())
        save_npy(os.path.join(out_dir, f'out-t{tag}.npy'), x.numpy())
    with open(os.path.join(out_dir, 'reference.json'), 'w') as f:
        json.dump({'classes': classes, 'truncations': [1.0, 0.5, 0.37],
                   'note': 'written by training/export.py from the eval-mode PyTorch generator'}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--run', default='training/runs/main')
    ap.add_argument('--checkpoint', default='best.pt')
    ap.add_argument('--out', default='models/fmnist')
    ap.add_argument('--reference', default='test/fixtures/fmnist')
    ap.add_argument('--stat-batches', type=int, default=2)
    ap.add_argument('--stat-per-class', type=int, default=50)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.run, 'config.json')) as f:
        cfg = json.load(f)
    ck = torch.load(os.path.join(args.run, args.checkpoint))
    model = BigGAN(cfg)
    model.load_state_dict(ck['G_ema'])
    print(f"exporting step {ck.get('step')} (training agreement {ck.get('agreement')})", flush=True)
    refine_spectral_norm(model)
    model.eval()
    standing_stats(model, batches=args.stat_batches, per_class=args.stat_per_class)
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, 'model.safetensors'), model.state_dict())
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(args.out, 'classes.json'), 'w') as f:
        json.dump(fmnist.CLASSES, f, indent=1)
    torch.save({'G_ema': model.state_dict(), 'step': ck.get('step')}, os.path.join(args.run, 'exported.pt'))
    reference_outputs(model, args.reference)
    print('done', flush=True)


if __name__ == '__main__':
    main()
