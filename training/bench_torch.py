"""PyTorch side of `npm run bench:generate`: images per second of a PyTorch BigGAN-deep on the very checkpoint the
TypeScript side just measured (a torch zip written by bench/generate.ts), eval mode, torch.no_grad, the same
inputs, threads and repetitions. Prints one JSON line.

The model is the reference port when --reference names a checkout of huggingface/pytorch-pretrained-BigGAN
(imported from there, see parity.py), otherwise training/biggan_deep.py, which has the same module tree and
inference semantics.

The model is measured as published: in eval mode its spectral-norm hooks still divide every weight by σ = u·W v on
every forward. With --fold-sn it is measured a second time after torch.nn.utils.remove_spectral_norm has folded
σ into the weights once (what the TypeScript engine does at load), so the ratio does not rest on that overhead.
`peakRssMiB` is the process's peak resident memory (ru_maxrss) after the as-published measurement: loading the
checkpoint, building the model and running it.

    /usr/bin/python3 training/bench_torch.py --checkpoint ckpt.pth --config config.json --threads 2 --reps 3 \
        [--batches 1,8] [--reference /tmp/hfref] [--fold-sn]
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build(cfg, reference):
    if reference:
        from parity import import_reference
        BigGAN, BigGANConfig = import_reference(os.path.abspath(reference))
        return BigGAN(BigGANConfig.from_dict(cfg)), 'reference port (huggingface/pytorch-pretrained-BigGAN)'
    from biggan_deep import BigGAN
    return BigGAN(cfg), 'training/biggan_deep.py'


def inputs(batch, cfg, z_path):
    """The TypeScript side's z rows (bench/generate.ts writes them) and its one-hot classes (b·37 mod C)."""
    z = np.load(z_path)[:batch]
    y = torch.zeros(batch, cfg['num_classes'])
    y[torch.arange(batch), (torch.arange(batch) * 37) % cfg['num_classes']] = 1
    return torch.from_numpy(np.ascontiguousarray(z)), y


def ips(model, batch, reps, cfg, z_path, truncation):
    z, y = inputs(batch, cfg, z_path)
    with torch.no_grad():
        model(z, y, truncation)  # warm-up
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(z, y, truncation)
            times.append(time.perf_counter() - t)
    times.sort()
    return batch / times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--checkpoint', required=True)
    ap.add_argument('--config', required=True)
    ap.add_argument('--z', required=True, help='[max batch, z_dim] float32 .npy')
    ap.add_argument('--batches', default='1,8')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--truncation', type=float, default=0.5)
    ap.add_argument('--reference', default=None)
    ap.add_argument('--fold-sn', action='store_true', help='also measure with spectral norm folded into the weights once')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    cfg = json.load(open(a.config))
    model, which = build(cfg, a.reference)
    model.load_state_dict(torch.load(a.checkpoint), strict=True)
    model.eval()
    out = {'model': which, 'threads': torch.get_num_threads()}
    for b in map(int, a.batches.split(',')):
        out[f'batch{b}'] = ips(model, b, a.reps, cfg, a.z, a.truncation)
    out['peakRssMiB'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    if a.fold_sn:
        for m in model.modules():
            if hasattr(m, 'weight_orig'):
                torch.nn.utils.remove_spectral_norm(m)
        out['folded'] = {f'batch{b}': ips(model, b, a.reps, cfg, a.z, a.truncation) for b in map(int, a.batches.split(','))}
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
