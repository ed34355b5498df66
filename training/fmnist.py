"""Fashion-MNIST from Debian's dataset-fashion-mnist (original IDX files), padded 28 -> 32 and scaled to
[-1, 1] (background -1), plus the judge: a small CNN classifier whose penultimate features also serve as
the feature space for per-class FID / precision / recall."""
import gzip
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = os.environ.get('FMNIST_DIR', '/usr/share/datasets/fashion-mnist')
CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split='train', limit=None):
    """Returns images [N,1,32,32] float32 in [-1,1] and labels [N] int64."""
    prefix = 'train' if split == 'train' else 't10k'
    x = read_idx(os.path.join(DATA_DIR, f'{prefix}-images-idx3-ubyte.gz'))
    y = read_idx(os.path.join(DATA_DIR, f'{prefix}-labels-idx1-ubyte.gz'))
    if limit:
        x, y = x[:limit], y[:limit]
    x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    x = F.pad(x, (2, 2, 2, 2), value=-1.0)
    return x, torch.from_numpy(y.astype(np.int64))


class Judge(nn.Module):
    """Input [N,1,32,32] in [-1,1]; returns (logits [N,10], features [N,128])."""

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.net = nn.Sequential(block(1, 32), nn.MaxPool2d(2), block(32, 64), block(64, 64), nn.MaxPool2d(2),
                                 block(64, 128), block(128, 128), nn.MaxPool2d(2))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        f = self.net(x).mean(dim=(2, 3))
        return self.fc(self.drop(f)), f


def to_judge(rgb):
    """Generator output [N,3,32,32] -> judge input: the mean of the three channels."""
    return rgb.mean(dim=1, keepdim=True)
