"""Measure the shipped model with its judge: agreement on generated samples (overall and per class) and,
in the judge's 128-d feature space, per-class FID, precision and recall against the real test images.

  /usr/bin/python3 training/evaluate.py --model models/fmnist --per-class 1000 --truncation 1.0
Writes models/fmnist/metrics.json (atomically) and prints a Markdown table for the model card.
"""
import argparse
import json
import os

import numpy as np
import torch

import fmnist
from biggan_deep import BigGAN
from train import one_hot, truncated_normal


def load_model(folder):
    with open(os.path.join(folder, 'config.json')) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, 'model.safetensors'), 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(n))
        blob = f.read()
    sd = {k: torch.from_numpy(np.frombuffer(blob, dtype='<f4', count=int(np.prod(v['shape'])) if v['shape'] else 1,
                                            offset=v['data_offsets'][0]).reshape(v['shape']).copy())
          for k, v in header.items() if k != '__metadata__'}
    model = BigGAN(cfg)
    model.load_state_dict(sd)
    return model.eval()


def sqrtm_psd_trace(s1, s2):
    """tr sqrt(S1 S2) for PSD S1, S2 via the symmetric form sqrt(S1) S2 sqrt(S1)."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    return np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()


def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * sqrtm_psd_trace(s1, s2))


def precision_recall(real, fake, k=3):
    """Improved precision/recall (Kynkäänniemi et al. 2019): k-NN balls around each set's points."""
    def radii(x):
        d = torch.cdist(x, x)
        return d.kthvalue(k + 1, dim=1).values

    def coverage(ref, r, q):
        return (torch.cdist(q, ref) <= r[None, :]).any(1).float().mean().item()
    real, fake = torch.from_numpy(real), torch.from_numpy(fake)
    return coverage(real, radii(real), fake), coverage(fake, radii(fake), real)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='models/fmnist')
    ap.add_argument('--per-class', type=int, default=1000)
    ap.add_argument('--truncation', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=2026)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = load_model(args.model)
    judge = fmnist.Judge()
    judge.load_state_dict(torch.load(os.path.join(args.model, 'judge.pt')))
    judge.eval()
    xte, yte = fmnist.load('test')
    real_logits, real_feat = judge(xte)
    judge_acc = (real_logits.argmax(1) == yte).float().mean().item()
    gen = torch.Generator().manual_seed(args.seed)
    rows, feats = [], {}
    for c in range(10):
        preds, fs = [], []
        for s in range(0, args.per_class, 250):
            n = min(250, args.per_class - s)
            z = args.truncation * truncated_normal((n, g.cfg['z_dim']), gen)
            x = g(z, one_hot(torch.full((n,), c)), args.truncation)
            logits, f = judge(fmnist.to_judge(x))
            preds.append(logits.argmax(1))
            fs.append(f)
        pred = torch.cat(preds)
        fake = torch.cat(fs).numpy().astype(np.float64)
        real = real_feat[yte == c].numpy().astype(np.float64)
        p, r = precision_recall(real.astype(np.float32), fake.astype(np.float32))
        rows.append({'class': fmnist.CLASSES[c], 'agreement': (pred == c).float().mean().item(), 'fid': fid(fake, real),
                     'precision': p, 'recall': r,
                     'judge_accuracy_on_real': (real_logits[yte == c].argmax(1) == c).float().mean().item()})
        print(json.dumps(rows[-1]), flush=True)
    overall = float(np.mean([r['agreement'] for r in rows]))
    metrics = {'samples': 10 * args.per_class, 'truncation': args.truncation, 'seed': args.seed,
               'judge_test_accuracy': judge_acc, 'agreement': overall, 'per_class': rows}
    tmp = os.path.join(args.model, 'metrics.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(metrics, f, indent=1)
    os.replace(tmp, os.path.join(args.model, 'metrics.json'))
    print(f'\njudge accuracy on the real test set: {judge_acc:.4f}')
    print(f'agreement on {10 * args.per_class} samples at truncation {args.truncation}: {overall:.4f}\n')
    print('| class | agreement | FID (judge features) | precision | recall | judge accuracy on real |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['class']} | {r['agreement']:.3f} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['judge_accuracy_on_real']:.3f} |")


if __name__ == '__main__':
    main()
