"""The XMem network (Cheng & Schwing, ECCV 2022) in plain torch, laid out like the official code.

Module and parameter names follow hkchengrex/XMem ``model/network.py`` and ``model/modules.py``,
so a released checkpoint (``XMem.pth``, ``XMem-s012.pth``, ``XMem-s01.pth``) loads with
``load_state_dict(strict=True)``. The tree (``CK`` key dim 64, ``CV`` value dim 512, ``CH``
hidden dim 64; ``G`` marks a group conv that runs once per object)::

    key_encoder.{conv1,bn1,res2,layer2,layer3}     ResNet-50 to stride 16 (1024 channels)
    value_encoder.{conv1,bn1,layer1,layer2,layer3} ResNet-18 to stride 16, 5 input channels
                                                   (RGB + this object's mask + the others')
    value_encoder.fuser.{block1,attention,block2}  image f16 + mask features -> CV      (G)
    value_encoder.hidden_reinforce.transform       GRU-like deep update of the sensory memory
    key_proj.{key_proj,d_proj,e_proj}              f16 -> key, shrinkage, selection
    decoder.fuser                                  f16 + readout + hidden -> 512        (G)
    decoder.hidden_update.{g16,g8,g4}_conv,transform  GRU-like sensory memory update
    decoder.up_16_8, decoder.up_8_4, decoder.pred  upsampling with skips, 1-channel logits

Shapes: group features are (B, num_objects, C, H, W); the image-only features are (B, C, H, W).
The backbones are built here (torchvision's residual blocks, no pretrained download); the test
checks every name and shape against the list taken from the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


@dataclass(frozen=True)
class XMemDims:
    """The three widths a checkpoint fixes (the official code reads them from the weights)."""

    key_dim: int = 64
    value_dim: int = 512
    hidden_dim: int = 64  # 0 disables the sensory memory


# -- ResNet trunks (stride 16, no layer4) -------------------------------------------------

def _layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int,
           stride: int) -> tuple[nn.Sequential, int]:
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out


def _stem(in_channels: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64)


# -- group modules: one conv over every object, objects folded into the batch -------------

class GConv2D(nn.Conv2d):
    """A conv over (B, N, C, H, W): objects share the weights."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b, n = g.shape[:2]
        out = super().forward(g.flatten(0, 1))
        return out.view(b, n, *out.shape[1:])


def _resize_groups(g: torch.Tensor, ratio: float, mode: str) -> torch.Tensor:
    b, n = g.shape[:2]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(g.flatten(0, 1), scale_factor=ratio, mode=mode, **kwargs)
    return out.view(b, n, *out.shape[1:])


def _with_image(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Image features (B, C, H, W) put before every object's features (B, N, C', H, W)."""
    return torch.cat([x.unsqueeze(1).expand(-1, g.shape[1], -1, -1, -1), g], 2)


class GroupResBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = (None if in_dim == out_dim
                           else GConv2D(in_dim, out_dim, kernel_size=3, padding=1))
        self.conv1 = GConv2D(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = GConv2D(out_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(g))))
        return out + (g if self.downsample is None else self.downsample(g))


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, channels // reduction),
                                 nn.ReLU(), nn.Linear(channels // reduction, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        att = (self.mlp(F.avg_pool2d(x, size, stride=size))
               + self.mlp(F.max_pool2d(x, size, stride=size)))
        return x * torch.sigmoid(att)[:, :, None, None]


class _SpatialConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _SpatialGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spatial = _SpatialConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al. 2018), as the fusion block uses it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ChannelGate = _ChannelGate(channels)
        self.SpatialGate = _SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Image features + per-object features -> per-object features, with CBAM in between."""

    def __init__(self, x_dim: int, g_dim: int, mid_dim: int, out_dim: int) -> None:
        super().__init__()
        self.block1 = GroupResBlock(x_dim + g_dim, mid_dim)
        self.attention = CBAM(mid_dim)
        self.block2 = GroupResBlock(mid_dim, out_dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        b, n = g.shape[:2]
        g = self.block1(_with_image(x, g))
        r = self.attention(g.flatten(0, 1)).view(b, n, *g.shape[2:])
        return self.block2(g + r)


def _gru(values: torch.Tensor, h: torch.Tensor, dim: int) -> torch.Tensor:
    """XMem's GRU variant: the candidate is made before the forget gate applies (kept as is,
    the checkpoints were trained with it)."""
    forget = torch.sigmoid(values[:, :, :dim])
    update = torch.sigmoid(values[:, :, dim:2 * dim])
    candidate = torch.tanh(values[:, :, 2 * dim:])
    return forget * h * (1 - update) + update * candidate


class HiddenUpdater(nn.Module):
    """Sensory memory update from the decoder's three scales (every frame)."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.g16_conv = GConv2D(g_dims[0], mid_dim, kernel_size=1)
        self.g8_conv = GConv2D(g_dims[1], mid_dim, kernel_size=1)
        self.g4_conv = GConv2D(g_dims[2], mid_dim, kernel_size=1)
        self.transform = GConv2D(mid_dim + hidden_dim, hidden_dim * 3, kernel_size=3, padding=1)

    def forward(self, g: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        x = (self.g16_conv(g[0]) + self.g8_conv(_resize_groups(g[1], 1 / 2, "area"))
             + self.g4_conv(_resize_groups(g[2], 1 / 4, "area")))
        return _gru(self.transform(torch.cat([x, h], 2)), h, self.hidden_dim)


class HiddenReinforcer(nn.Module):
    """Sensory memory 'deep update' from the value encoder (on memory frames)."""

    def __init__(self, g_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.transform = GConv2D(g_dim + hidden_dim, hidden_dim * 3, kernel_size=3, padding=1)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return _gru(self.transform(torch.cat([g, h], 2)), h, self.hidden_dim)


class KeyEncoder(nn.Module):
    """ResNet-50 to stride 16; returns f16 (1024), f8 (512), f4 (256)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = _stem(3)
        self.res2, c = _layer(Bottleneck, 64, 64, 3, 1)
        self.layer2, c = _layer(Bottleneck, c, 128, 4, 2)
        self.layer3, c = _layer(Bottleneck, c, 256, 6, 2)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(f))), 3, stride=2, padding=1)
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        return self.layer3(f8), f8, f4


class ValueEncoder(nn.Module):
    """ResNet-18 over RGB + masks, fused with the key encoder's f16 into one value per object."""

    def __init__(self, value_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _stem(5)
        self.layer1, c = _layer(BasicBlock, 64, 64, 2, 1)
        self.layer2, c = _layer(BasicBlock, c, 128, 2, 2)
        self.layer3, c = _layer(BasicBlock, c, 256, 2, 2)
        self.fuser = FeatureFusionBlock(1024, 256, value_dim, value_dim)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim) if hidden_dim > 0 else None

    def forward(self, image: torch.Tensor, f16: torch.Tensor, h: torch.Tensor,
                masks: torch.Tensor, others: torch.Tensor,
                deep_update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        g = _with_image(image, torch.stack([masks, others], 2))
        b, n = g.shape[:2]
        g = self.bn1(self.conv1(g.flatten(0, 1)))
        # the official order: max-pool before ReLU (equal results, kept for exactness)
        g = F.relu(F.max_pool2d(g, 3, stride=2, padding=1))
        g = self.layer3(self.layer2(self.layer1(g)))
        g = self.fuser(f16, g.view(b, n, *g.shape[1:]))
        if deep_update and self.hidden_reinforce is not None:
            h = self.hidden_reinforce(g, h)
        return g, h


class UpsampleBlock(nn.Module):
    def __init__(self, skip_dim: int, up_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, kernel_size=3, padding=1)
        self.out_conv = GroupResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        g = _resize_groups(up, 2, "bilinear")
        return self.out_conv(self.skip_conv(skip).unsqueeze(1).expand(-1, g.shape[1], -1, -1, -1)
                             + g)


class KeyProjection(nn.Module):
    """f16 -> key, shrinkage (d^2 + 1 >= 1) and selection (sigmoid) for the L2 similarity."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)
        self.d_proj = nn.Conv2d(in_dim, 1, kernel_size=3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, need_shrinkage: bool, need_selection: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        shrinkage = self.d_proj(x) ** 2 + 1 if need_shrinkage else None
        selection = torch.sigmoid(self.e_proj(x)) if need_selection else None
        return self.key_proj(x), shrinkage, selection


class Decoder(nn.Module):
    def __init__(self, value_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fuser = FeatureFusionBlock(1024, value_dim + hidden_dim, 512, 512)
        self.hidden_update = (HiddenUpdater((512, 256, 256 + 1), 256, hidden_dim)
                              if hidden_dim > 0 else None)
        self.up_16_8 = UpsampleBlock(512, 512, 256)
        self.up_8_4 = UpsampleBlock(256, 256, 256)
        self.pred = nn.Conv2d(256, 1, kernel_size=3, padding=1)

    def forward(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor,
                hidden: torch.Tensor, readout: torch.Tensor, h_out: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        b, n = readout.shape[:2]
        if self.hidden_update is not None:
            readout = torch.cat([readout, hidden], 2)
        g16 = self.fuser(f16, readout)
        g8 = self.up_16_8(f8, g16)
        g4 = self.up_8_4(f4, g8)
        logits = self.pred(F.relu(g4.flatten(0, 1)))
        new_hidden = None
        if h_out and self.hidden_update is not None:
            g4 = torch.cat([g4, logits.view(b, n, 1, *logits.shape[-2:])], 2)
            new_hidden = self.hidden_update([g16, g8, g4], hidden)
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return new_hidden, logits.view(b, n, *logits.shape[-2:])


def aggregate(prob: torch.Tensor, dim: int) -> torch.Tensor:
    """STM's soft aggregation: per-object probabilities -> a softmax over background + objects
    (the background is the product of every object's absence)."""
    with_bg = torch.cat([torch.prod(1 - prob, dim=dim, keepdim=True), prob], dim)
    with_bg = with_bg.clamp(1e-7, 1 - 1e-7)
    return F.softmax(torch.log(with_bg / (1 - with_bg)), dim=dim)


class XMem(nn.Module):
    """The four parts the inference loop calls: key encoding, value encoding, decoding."""

    def __init__(self, dims: XMemDims = XMemDims()) -> None:
        super().__init__()
        self.dims = dims
        self.key_encoder = KeyEncoder()
        self.value_encoder = ValueEncoder(dims.value_dim, dims.hidden_dim)
        self.key_proj = KeyProjection(1024, dims.key_dim)
        self.decoder = Decoder(dims.value_dim, dims.hidden_dim)

    def encode_key(self, frame: torch.Tensor, need_shrinkage: bool = True,
                   need_selection: bool = True):
        """(B, 3, H, W) -> key, shrinkage, selection, f16, f8, f4."""
        f16, f8, f4 = self.key_encoder(frame)
        key, shrinkage, selection = self.key_proj(f16, need_shrinkage, need_selection)
        return key, shrinkage, selection, f16, f8, f4

    def encode_value(self, frame: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor, deep_update: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """masks (B, N, H, W) -> value (B, N, CV, H/16, W/16) and the (maybe updated) hidden."""
        n = masks.shape[1]
        if n == 1:
            others = torch.zeros_like(masks)
        else:
            # each object's "others" channel: the sum of every other object's mask
            others = torch.cat([masks[:, [j for j in range(n) if j != i]].sum(1, keepdim=True)
                                for i in range(n)], 1)
        return self.value_encoder(frame, f16, hidden, masks, others, deep_update)

    def segment(self, features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                readout: torch.Tensor, hidden: torch.Tensor, h_out: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Decode -> (new hidden or None, probabilities with background first (B, N+1, H, W))."""
        new_hidden, logits = self.decoder(*features, hidden, readout, h_out=h_out)
        return new_hidden, aggregate(torch.sigmoid(logits), dim=1)
