"""Train the judge (Fashion-MNIST classifier) and export it to ONNX.

  /usr/bin/python3 training/train_judge.py --out models/fmnist [--epochs 6] [--limit N]
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

import fmnist


def evaluate(judge, x, y):
    judge.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (judge(x[i:i + 1000])[0].argmax(1) == y[i:i + 1000]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='models/fmnist')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--limit', type=int, default=None, help='use only the first N training images (smoke runs)')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xtr, ytr = fmnist.load('train', args.limit)
    xte, yte = fmnist.load('test', args.limit)
    judge = fmnist.Judge()
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    steps = args.epochs * ((len(xtr) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(args.epochs):
        judge.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            xb = xtr[idx]
            # small random shifts (padding makes them free) so the judge is not fooled by placement
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(judge(xb)[0], ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(judge, xte, yte)
        print(f'epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f} test accuracy {acc:.4f} ({time.time() - t0:.0f}s)', flush=True)
    os.makedirs(args.out, exist_ok=True)
    torch.save(judge.state_dict(), os.path.join(args.out, 'judge.pt.tmp'))
    os.replace(os.path.join(args.out, 'judge.pt.tmp'), os.path.join(args.out, 'judge.pt'))
    judge.eval()
    tmp = os.path.join(args.out, 'judge.onnx.tmp')
    torch.onnx.export(judge, torch.zeros(1, 1, 32, 32), tmp, input_names=['image'], output_names=['logits', 'features'],
                      dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}, 'features': {0: 'batch'}},
                      opset_version=13)
    os.replace(tmp, os.path.join(args.out, 'judge.onnx'))
    print(f'final test accuracy {acc:.4f}')


if __name__ == '__main__':
    main()
