"""BigGAN-deep generator with exactly the module tree, key names and inference semantics of the
reference PyTorch port (huggingface/pytorch-pretrained-BigGAN), written for training.

Two BN modes: while training (and while collecting standing statistics) every CCBN normalises with the
batch's own statistics; in eval mode it uses the 51 truncation-indexed stored rows, selected and
interpolated exactly as the reference does (swapped interpolation weights included), so the TypeScript
engine runs the exported weights unchanged.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def snconv2d(eps, **kw):
    return nn.utils.spectral_norm(nn.Conv2d(**kw), eps=eps)


def snlinear(eps, **kw):
    return nn.utils.spectral_norm(nn.Linear(**kw), eps=eps)


class SelfAttn(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.snconv1x1_theta = snconv2d(eps, in_channels=c, out_channels=c // 8, kernel_size=1, bias=False)
        self.snconv1x1_phi = snconv2d(eps, in_channels=c, out_channels=c // 8, kernel_size=1, bias=False)
        self.snconv1x1_g = snconv2d(eps, in_channels=c, out_channels=c // 2, kernel_size=1, bias=False)
        self.snconv1x1_o_conv = snconv2d(eps, in_channels=c // 2, out_channels=c, kernel_size=1, bias=False)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).view(b, c // 8, h * w)
        phi = self.maxpool(self.snconv1x1_phi(x)).view(b, c // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)   # no 1/sqrt(d), as in BigGAN
        g = self.maxpool(self.snconv1x1_g(x)).view(b, c // 2, h * w // 4)
        o = torch.bmm(g, attn.permute(0, 2, 1)).view(b, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class BigGANBatchNorm(nn.Module):
    """CCBN (conditional) or the final plain BN, with truncation-indexed stored statistics."""

    def __init__(self, c, cond_dim=None, n_stats=51, eps=1e-4, conditional=True):
        super().__init__()
        self.eps, self.conditional = eps, conditional
        self.register_buffer('running_means', torch.zeros(n_stats, c))
        self.register_buffer('running_vars', torch.ones(n_stats, c))
        self.step_size = 1.0 / (n_stats - 1)
        self.collect = None   # a list while standing statistics are gathered
        if conditional:
            self.scale = snlinear(eps, in_features=cond_dim, out_features=c, bias=False)
            self.offset = snlinear(eps, in_features=cond_dim, out_features=c, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))

    def stored_stats(self, truncation):
        # Literal copy of the reference semantics: the fractional part weighs the LOWER row.
        coef, start = math.modf(truncation / self.step_size)
        start = int(start)
        if coef != 0.0:
            mean = self.running_means[start] * coef + self.running_means[start + 1] * (1 - coef)
            var = self.running_vars[start] * coef + self.running_vars[start + 1] * (1 - coef)
        else:
            mean, var = self.running_means[start], self.running_vars[start]
        return mean, var

    def forward(self, x, truncation, cond=None):
        if self.training or self.collect is not None:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            if self.collect is not None:
                self.collect.append((mean.detach().double(), var.detach().double()))
        else:
            mean, var = self.stored_stats(truncation)
        mean, var = mean.view(1, -1, 1, 1), var.view(1, -1, 1, 1)
        if self.conditional:
            gain = 1 + self.scale(cond).unsqueeze(-1).unsqueeze(-1)
            bias = self.offset(cond).unsqueeze(-1).unsqueeze(-1)
        else:
            gain, bias = self.weight.view(1, -1, 1, 1), self.bias.view(1, -1, 1, 1)
        return (x - mean) / torch.sqrt(var + self.eps) * gain + bias


class GenBlock(nn.Module):
    def __init__(self, cin, cout, cond_dim, up_sample, n_stats, eps):
        super().__init__()
        self.up_sample, self.drop_channels = up_sample, cin != cout
        mid = cin // 4
        self.bn_0 = BigGANBatchNorm(cin, cond_dim, n_stats, eps)
        self.conv_0 = snconv2d(eps, in_channels=cin, out_channels=mid, kernel_size=1)
        self.bn_1 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = snconv2d(eps, in_channels=mid, out_channels=mid, kernel_size=3, padding=1)
        self.bn_2 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = snconv2d(eps, in_channels=mid, out_channels=mid, kernel_size=3, padding=1)
        self.bn_3 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = snconv2d(eps, in_channels=mid, out_channels=cout, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x, cond, truncation):
        x0 = x
        x = self.conv_0(self.relu(self.bn_0(x, truncation, cond)))
        x = self.relu(self.bn_1(x, truncation, cond))
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        x = self.conv_1(x)
        x = self.conv_2(self.relu(self.bn_2(x, truncation, cond)))
        x = self.conv_3(self.relu(self.bn_3(x, truncation, cond)))
        if self.drop_channels:
            x0 = x0[:, : x0.shape[1] // 2]
        if self.up_sample:
            x0 = F.interpolate(x0, scale_factor=2, mode='nearest')
        return x + x0


class Generator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, cond_dim, eps = cfg['channel_width'], cfg['z_dim'] * 2, cfg['eps']
        self.ch = ch
        self.gen_z = snlinear(eps, in_features=cond_dim, out_features=4 * 4 * 16 * ch)
        layers = []
        for i, (up, cin, cout) in enumerate(cfg['layers']):
            if i == cfg['attention_layer_position']:
                layers.append(SelfAttn(ch * cin, eps))
            layers.append(GenBlock(ch * cin, ch * cout, cond_dim, up, cfg['n_stats'], eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANBatchNorm(ch, n_stats=cfg['n_stats'], eps=eps, conditional=False)
        self.relu = nn.ReLU()
        self.conv_to_rgb = snconv2d(eps, in_channels=ch, out_channels=ch, kernel_size=3, padding=1)

    def forward(self, cond, truncation):
        h = self.gen_z(cond).view(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2).contiguous()  # TF (NHWC) order
        for layer in self.layers:
            h = layer(h, cond, truncation) if isinstance(layer, GenBlock) else layer(h)
        h = self.conv_to_rgb(self.relu(self.bn(h, truncation)))
        return torch.tanh(h[:, :3])


class BigGAN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Linear(cfg['num_classes'], cfg['z_dim'], bias=False)
        self.generator = Generator(cfg)

    def forward(self, z, class_label, truncation):
        assert 0 < truncation <= 1
        cond = torch.cat((z, self.embeddings(class_label)), dim=1)   # z first, as the TF graph
        return self.generator(cond, truncation)

    def bns(self):
        return [m for m in self.modules() if isinstance(m, BigGANBatchNorm)]


# ---- Discriminator (ours: BigGAN-style residual D with projection, spectral norm everywhere) ----

class DBlock(nn.Module):
    def __init__(self, cin, cout, down, preact=True):
        super().__init__()
        self.conv1 = nn.utils.spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = nn.utils.spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.sc = nn.utils.spectral_norm(nn.Conv2d(cin, cout, 1)) if (cin != cout or down) else None
        self.down, self.preact = down, preact

    def forward(self, x):
        h = F.relu(x) if self.preact else x
        h = self.conv2(F.relu(self.conv1(h)))
        s = x
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.sc is not None:
            s = self.sc(s)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


class Discriminator(nn.Module):
    def __init__(self, ch, num_classes):
        super().__init__()
        self.blocks = nn.Sequential(
            DBlock(3, ch * 2, True, preact=False), DBlock(ch * 2, ch * 4, True),
            DBlock(ch * 4, ch * 8, True), DBlock(ch * 8, ch * 8, False))
        self.linear = nn.utils.spectral_norm(nn.Linear(ch * 8, 1))
        self.embed = nn.utils.spectral_norm(nn.Embedding(num_classes, ch * 8))
        # auxiliary classifier head (AC-GAN style): trained on real labels, it gives G a direct signal
        # to make each class recognisable, which the projection term alone gave too weakly for shirts/coats
        self.classify = nn.Linear(ch * 8, num_classes)

    def forward(self, x, y, with_logits=False):
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        score = self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)
        return (score, self.classify(h)) if with_logits else score
