"""Small slice classifier (after paper 004's CNN4): four conv blocks and a global pooled linear head.

Used 18 times by the three-plane cascade (per plane: ICH yes/no, then one binary net per subtype)
and once as the U-Net's slice gate. Any input size: the head pools globally.
"""
import torch
import torch.nn as nn


class SliceClassifier(nn.Module):
    def __init__(self, channels=(16, 32, 48, 64), in_channels=3):
        super().__init__()
        layers, cin = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, 1)

    def forward(self, x):
        """x (N, C, H, W) → logits (N,)."""
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


class ClassifierBank(nn.Module):
    """Several independent binary classifiers stored together (one weights file per plane)."""

    def __init__(self, names, **kw):
        super().__init__()
        self.names = list(names)
        self.nets = nn.ModuleDict({n: SliceClassifier(**kw) for n in self.names})

    def forward(self, x, names=None):
        return {n: self.nets[n](x) for n in (names or self.names)}
