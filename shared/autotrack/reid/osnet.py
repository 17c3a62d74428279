"""OSNet (Zhou et al., ICCV 2019), written here so torchreid checkpoints load without torchreid.

Omni-scale network: each block runs four streams of 1 to 4 stacked lightweight 3x3
convolutions (receptive fields of growing size) on a bottleneck, mixes them through one
shared channel gate, and adds a residual. Parameter names follow torchreid's modules
(``conv1.conv``, ``conv2.0.conv2b.1.bn``, ``conv2.0.gate.fc1``, ``fc.0``, ...), so the
``state_dict`` of ``osnet_x1_0`` / ``x0_75`` / ``x0_5`` / ``x0_25`` and of ``osnet_ibn_x1_0``
(instance norm in the first layers) loads as is; the identity classifier is not needed to
embed and is never built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# torchreid's width presets: channels after the stem and after each of the three stages.
WIDTHS: dict[str, tuple[int, int, int, int]] = {
    "x1_0": (64, 256, 384, 512),
    "x0_75": (48, 192, 288, 384),
    "x0_5": (32, 128, 192, 256),
    "x0_25": (16, 64, 96, 128),
}
STAGE_NAMES = ("conv2", "conv3", "conv4")
_BOTTLENECK = 4  # block's inner channels = out / 4
_GATE_REDUCTION = 16


class ConvNorm(nn.Module):
    """Convolution without bias, then batch (or instance) norm, then optionally ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *,
                 relu: bool = True, instance_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.BatchNorm2d(cout)
        self.with_relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.with_relu else x


class LiteConv(nn.Module):
    """Pointwise convolution, then depthwise 3x3, norm and ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Per-channel weights in (0, 1) from the globally pooled input (shared by all streams)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // _GATE_REDUCTION, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))


def _stream(channels: int, depth: int) -> nn.Module:
    """``depth`` stacked LiteConvs; torchreid keeps the one-deep stream unwrapped."""
    if depth == 1:
        return LiteConv(channels)
    return nn.Sequential(*(LiteConv(channels) for _ in range(depth)))


class OmniScaleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, *, instance_norm: bool = False) -> None:
        super().__init__()
        mid = cout // _BOTTLENECK
        self.conv1 = ConvNorm(cin, mid)
        self.conv2a = _stream(mid, 1)
        self.conv2b = _stream(mid, 2)
        self.conv2c = _stream(mid, 3)
        self.conv2d = _stream(mid, 4)
        self.gate = ChannelGate(mid)
        self.conv3 = ConvNorm(mid, cout, relu=False)
        self.downsample = ConvNorm(cin, cout, relu=False) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if instance_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = self.conv1(x)
        mixed = sum(self.gate(stream(bottleneck))
                    for stream in (self.conv2a, self.conv2b, self.conv2c, self.conv2d))
        out = self.conv3(mixed)
        out = out + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None:
            out = self.IN(out)
        return torch.relu(out)


def _stage(cin: int, cout: int, blocks: int, *, shrink: bool, instance_norm: bool
           ) -> nn.Sequential:
    layers: list[nn.Module] = [
        OmniScaleBlock(cin if i == 0 else cout, cout, instance_norm=instance_norm)
        for i in range(blocks)
    ]
    if shrink:  # transition: pointwise conv, then halve the resolution
        layers.append(nn.Sequential(ConvNorm(cout, cout), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """The embedding part of OSNet; ``forward`` returns (N, feature_dim) features."""

    def __init__(self, channels: Sequence[int] = WIDTHS["x1_0"],
                 blocks: Sequence[int] = (2, 2, 2), feature_dim: int | None = 512, *,
                 instance_norm: bool = False) -> None:
        super().__init__()
        if len(channels) != 4 or len(blocks) != 3:
            raise ValueError("OSNet needs 4 channel counts and 3 block counts")
        if any(c % _BOTTLENECK for c in channels[1:]):
            raise ValueError(f"stage channels must be multiples of {_BOTTLENECK}: {channels}")
        self.channels = tuple(int(c) for c in channels)
        self.blocks = tuple(int(b) for b in blocks)
        self.conv1 = ConvNorm(3, channels[0], 7, stride=2, instance_norm=instance_norm)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(channels[0], channels[1], blocks[0], shrink=True,
                            instance_norm=instance_norm)
        self.conv3 = _stage(channels[1], channels[2], blocks[1], shrink=True, instance_norm=False)
        self.conv4 = _stage(channels[2], channels[3], blocks[2], shrink=False,
                            instance_norm=False)
        self.conv5 = ConvNorm(channels[3], channels[3])
        if feature_dim:
            self.fc: nn.Sequential | None = nn.Sequential(
                nn.Linear(channels[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU())
            self.feature_dim = int(feature_dim)
        else:
            self.fc = None
            self.feature_dim = channels[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        v = x.mean(dim=(2, 3))
        return v if self.fc is None else self.fc(v)


def osnet(width: str = "x1_0", *, feature_dim: int | None = 512,
          instance_norm: bool = False) -> OSNet:
    """A torchreid-shaped OSNet of a preset width (``x1_0``, ``x0_75``, ``x0_5``, ``x0_25``)."""
    if width not in WIDTHS:
        raise ValueError(f"unknown OSNet width {width!r}; known: {', '.join(WIDTHS)}")
    return OSNet(WIDTHS[width], feature_dim=feature_dim, instance_norm=instance_norm)


def osnet_from_state_dict(state: dict[str, torch.Tensor]) -> OSNet:
    """An OSNet shaped like the one a state dict was saved from (weights not loaded yet).

    Raises KeyError naming the first tensor a torchreid OSNet would have and this lacks.
    """
    def shape(key: str) -> torch.Size:
        if key not in state:
            raise KeyError(key)
        return state[key].shape

    stem = shape("conv1.conv.weight")[0]
    outs, blocks = [], []
    for stage in STAGE_NAMES:
        outs.append(shape(f"{stage}.0.conv3.conv.weight")[0])
        count = 0
        while f"{stage}.{count}.conv1.conv.weight" in state:
            count += 1
        blocks.append(count)
    feature_dim = shape("fc.0.weight")[0] if "fc.0.weight" in state else None
    instance_norm = "conv2.0.IN.weight" in state
    return OSNet((stem, *outs), blocks, feature_dim, instance_norm=instance_norm)
