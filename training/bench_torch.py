"""PyTorch side of `npm run bench:generate`: the reference-semantics generator (training/biggan_deep.py, eval
mode, torch.no_grad) on random weights of the published sizes; prints one JSON line per size."""
import argparse
import json
import time

import torch

from biggan_deep import BigGAN


def published(res):
    layers = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8]]
    if res == 128:
        layers += [[True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]
    else:
        layers += [[True, 8, 8], [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]
    return dict(z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000, layers=layers,
                attention_layer_position=8, eps=1e-4, n_stats=51, output_dim=res)


def ips(model, batch, reps):
    z = torch.randn(batch, 128).clamp(-2, 2) * 0.5
    y = torch.zeros(batch, 1000)
    y[torch.arange(batch), (torch.arange(batch) * 37) % 1000] = 1
    with torch.no_grad():
        model(z, y, 0.5)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(z, y, 0.5)
            times.append(time.perf_counter() - t)
    times.sort()
    return batch / times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', default='128,256')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for size in map(int, a.sizes.split(',')):
        model = BigGAN(published(size)).eval()
        print(json.dumps({'size': size, 'batch1': ips(model, 1, a.reps), 'batch8': ips(model, 8, a.reps)}), flush=True)


if __name__ == '__main__':
    main()
