"""Train the shipped default model: a class-conditional BigGAN-deep generator on Fashion-MNIST (32x32).

  /usr/bin/python3 training/train.py --run training/runs/main --minutes 85      # resumes if the run exists
  /usr/bin/python3 training/train.py --run /tmp/smoke --steps 5 --limit 512      # smoke run (CI)

Recipe: hinge loss, projection discriminator with spectral norm, Adam(0, 0.999) at 2e-4 for both nets,
batch 64, one D step per G step, an auxiliary classifier head on D (AC-GAN loss, weight 1), EMA of G (decay 0.999) started after a warm-up. Every --eval-every steps
the judge (models/fmnist/judge.pt) classifies fresh EMA samples; the best checkpoint by agreement is kept.
"""
import argparse
import copy
import json
import os
import time

import torch
import torch.nn.functional as F

import fmnist
from biggan_deep import BigGAN, Discriminator

CONFIG = {
    'attention_layer_position': 4,
    'channel_width': 16,
    'class_embed_dim': 32,
    'eps': 1e-4,
    'layers': [[False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
    'n_stats': 51,
    'num_classes': 10,
    'output_dim': 32,
    'z_dim': 32,
}


def truncated_normal(shape, generator=None, bound=2.0):
    """Standard normal truncated to [-bound, bound] by resampling, as BigGAN samples z."""
    z = torch.randn(shape, generator=generator)
    bad = z.abs() > bound
    while bad.any():
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
        bad = z.abs() > bound
    return z


def one_hot(y, n=10):
    return F.one_hot(y, n).float()


def save_atomic(obj, path):
    tmp = f'{path}.tmp'
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def agreement(g_ema, judge, per_class=50, seed=1234):
    """Fraction of fresh samples (truncation 1, batch statistics) the judge assigns to their class."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(10).repeat_interleave(per_class)
    z = truncated_normal((len(y), CONFIG['z_dim']), gen)
    g_ema.train()   # batch statistics over a large mixed batch stand in for standing statistics
    x = g_ema(z, one_hot(y), 1.0)
    pred = judge(fmnist.to_judge(x))[0].argmax(1)
    hits = (pred == y).float().view(10, per_class).mean(1)
    return hits.mean().item(), hits.tolist()


@torch.no_grad()
def update_ema(ema, model, decay):
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm, alpha=1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--run', default='training/runs/main')
    ap.add_argument('--minutes', type=float, default=85)
    ap.add_argument('--steps', type=int, default=100000)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--lr', type=float, default=2e-4)
    ap.add_argument('--d-width', type=int, default=16)
    ap.add_argument('--aux-weight', type=float, default=1.0,
                    help='weight of the auxiliary classification loss (D on real labels, G on its conditioning)')
    ap.add_argument('--ema-start', type=int, default=1000)
    ap.add_argument('--ema-decay', type=float, default=0.999)
    ap.add_argument('--eval-every', type=int, default=250)
    ap.add_argument('--save-every', type=int, default=250)
    ap.add_argument('--limit', type=int, default=None, help='use only the first N training images (smoke runs)')
    ap.add_argument('--judge', default='models/fmnist/judge.pt')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.run, exist_ok=True)
    with open(os.path.join(args.run, 'config.json'), 'w') as f:
        json.dump(CONFIG, f)

    x_all, y_all = fmnist.load('train', args.limit)
    x_all = x_all.repeat(1, 3, 1, 1)   # the generator draws RGB; grey images have three equal channels
    G, D = BigGAN(CONFIG), Discriminator(args.d_width, CONFIG['num_classes'])
    G_ema = copy.deepcopy(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.999), eps=1e-6)
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.0, 0.999), eps=1e-6)
    judge = None   # loaded at the first evaluation, so training may start while the judge still trains

    step, best = 0, -1.0
    last = os.path.join(args.run, 'last.pt')
    if os.path.exists(last):
        ck = torch.load(last)
        G.load_state_dict(ck['G']); D.load_state_dict(ck['D']); G_ema.load_state_dict(ck['G_ema'])
        opt_g.load_state_dict(ck['opt_g']); opt_d.load_state_dict(ck['opt_d'])
        step, best = ck['step'], ck['best']
        torch.set_rng_state(ck['rng'])
        print(f'resumed at step {step} (best agreement score {best:.4f})', flush=True)
    else:
        torch.manual_seed(0)

    t0 = time.time()
    log = open(os.path.join(args.run, 'log.txt'), 'a')

    def checkpoint():
        save_atomic({'G': G.state_dict(), 'D': D.state_dict(), 'G_ema': G_ema.state_dict(), 'opt_g': opt_g.state_dict(),
                     'opt_d': opt_d.state_dict(), 'step': step, 'best': best, 'rng': torch.get_rng_state()}, last)

    while step < args.steps and (time.time() - t0) < args.minutes * 60:
        G.train(); D.train()
        idx = torch.randint(0, len(x_all), (args.batch,))
        real, y = x_all[idx], y_all[idx]
        z = truncated_normal((args.batch, CONFIG['z_dim']))
        # D step
        with torch.no_grad():
            fake = G(z, one_hot(y), 1.0)
        score_real, logits_real = D(real, y, with_logits=True)
        loss_d_real = F.relu(1 - score_real).mean()
        loss_d_fake = F.relu(1 + D(fake, y)).mean()
        loss_d_cls = F.cross_entropy(logits_real, y)
        opt_d.zero_grad(set_to_none=True)
        (loss_d_real + loss_d_fake + args.aux_weight * loss_d_cls).backward()
        opt_d.step()
        # G step
        yg = torch.randint(0, 10, (args.batch,))
        zg = truncated_normal((args.batch, CONFIG['z_dim']))
        score_fake, logits_fake = D(G(zg, one_hot(yg), 1.0), yg, with_logits=True)
        loss_g = -score_fake.mean()
        loss_g_cls = F.cross_entropy(logits_fake, yg)
        opt_g.zero_grad(set_to_none=True)
        (loss_g + args.aux_weight * loss_g_cls).backward()
        opt_g.step()
        step += 1
        update_ema(G_ema, G, 0.0 if step < args.ema_start else args.ema_decay)

        if step % 50 == 0:
            line = (f'step {step} d_real {loss_d_real.item():.3f} d_fake {loss_d_fake.item():.3f} '
                    f'g {loss_g.item():.3f} cls_real {loss_d_cls.item():.3f} cls_fake {loss_g_cls.item():.3f} ({time.time() - t0:.0f}s)')
            print(line, flush=True); log.write(line + '\n'); log.flush()
        if judge is None and os.path.exists(args.judge):
            judge = fmnist.Judge()
            judge.load_state_dict(torch.load(args.judge))
            judge.eval()
        if judge is not None and (step % args.eval_every == 0 or step == args.steps):
            mean, per = agreement(G_ema, judge)
            score = mean + 0.5 * min(per)
            line = f'eval step {step} agreement {mean:.3f} min {min(per):.3f} per-class {[round(p, 2) for p in per]}'
            if score > best and step >= args.ema_start:
                best = score
                save_atomic({'G_ema': G_ema.state_dict(), 'step': step, 'agreement': mean, 'per_class': per},
                            os.path.join(args.run, 'best.pt'))
                line += ' (best)'
            print(line, flush=True); log.write(line + '\n'); log.flush()
        if step % args.save_every == 0:
            checkpoint()
    checkpoint()
    print(f'stopped at step {step} after {time.time() - t0:.0f}s', flush=True)


if __name__ == '__main__':
    main()
