"""Weakly supervised MIL slice classifier of paper 001 (Nemcek, Vicar, Jakubicek).

Paper: 18 conv layers, 3 levels separated by pooling, 3 residual blocks per level, a likelihood map
at 1/4 of the input. Authors' code: 12/24/36 channels, one effective block per level, 1/8 map.
Ours: the paper's intent — 3 working residual blocks (2 convs each) per level, 12/24/36 channels,
2×2 max-pooling after levels 1 and 2 only, so the map is 1/4 of the input (32×32 for 128).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return F.relu(x + self.conv2(self.conv1(x)), inplace=True)


class MILNet(nn.Module):
    """Slice logit + likelihood map from a 3-channel slice, or with context (2.5D, ours) from 9
    channels: the three windows of the slice below, the slice itself and the slice above.

    variant "maxpool": a 1×1 conv gives a one-channel logit map; the slice logit is its global max.
    variant "attention": gated attention (Ilse et al. 2018) over map positions; the map is the
    attention weights a (softmax over positions), the slice logit a 1×1 conv of Σ a·h.
    """

    def __init__(self, variant="maxpool", channels=(12, 24, 36), blocks=3, attention_dim=36, context=False):
        super().__init__()
        if variant not in ("maxpool", "attention"):
            raise ValueError(f"unknown MIL variant {variant!r}")
        self.variant = variant
        layers, cin = [], 9 if context else 3
        for level, c in enumerate(channels):
            layers.append(conv_bn_relu(cin, c))
            layers += [ResidualBlock(c) for _ in range(blocks)]
            if level < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = c
        self.features = nn.Sequential(*layers)
        if variant == "maxpool":
            self.head = nn.Conv2d(cin, 1, 1)
        else:
            self.att_v = nn.Conv2d(cin, attention_dim, 1)
            self.att_u = nn.Conv2d(cin, attention_dim, 1)
            self.att_w = nn.Conv2d(attention_dim, 1, 1)
            self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, x):
        """x (N, 3 or 9, H, W) → slice logits (N,), map (N, H/4, W/4): logits (maxpool) or attention weights."""
        h = self.features(x)
        if self.variant == "maxpool":
            m = self.head(h)[:, 0]
            return m.flatten(1).amax(dim=1), m
        n, c, hh, ww = h.shape
        gate = torch.tanh(self.att_v(h)) * torch.sigmoid(self.att_u(h))
        a = torch.softmax(self.att_w(gate).flatten(1), dim=1)  # (N, hh*ww)
        pooled = (h.flatten(2) * a[:, None]).sum(dim=2)[..., None, None]
        return self.head(pooled).flatten(), a.view(n, hh, ww)

    def likelihood(self, x, resize=True):
        """Slice probability (N,) and the likelihood map in [0, 1] at input size (N, H, W), or at the
        network's map size (N, H/4, W/4) with resize=False."""
        logit, m = self.forward(x)
        if self.variant == "maxpool":
            m = torch.sigmoid(m)
        if resize:
            m = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return torch.sigmoid(logit), m
