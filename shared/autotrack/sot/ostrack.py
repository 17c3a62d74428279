"""OSTrack (Ye et al., ECCV 2022, "Joint Feature Learning and Relation Modeling for Tracking:
A One-Stream Framework") in plain torch: a one-stream ViT over template + search tokens with
candidate elimination (CE), the center head, and the official test-time post-processing
(Hann window on the score map, box mapped back from the search crop, clipped with a margin).

Module and parameter names follow the official code, so a released checkpoint's ``net`` dict
loads with ``strict=True``. The keys (``D`` = embed dim, ``N`` = depth, ``C`` = head channels)::

    backbone.cls_token                        [1, 1, D]        (kept, unused at test time)
    backbone.pos_embed                        [1, 197, D]      (224/16 grid + cls, unused)
    backbone.pos_embed_z                      [1, (T/16)^2, D] template positions
    backbone.pos_embed_x                      [1, (S/16)^2, D] search positions
    backbone.patch_embed.proj.{weight,bias}   Conv2d(3, D, 16, 16)
    backbone.blocks.{i}.norm1.{weight,bias}
    backbone.blocks.{i}.attn.qkv.{weight,bias}
    backbone.blocks.{i}.attn.proj.{weight,bias}
    backbone.blocks.{i}.norm2.{weight,bias}
    backbone.blocks.{i}.mlp.fc1.{weight,bias}
    backbone.blocks.{i}.mlp.fc2.{weight,bias}
    backbone.norm.{weight,bias}
    box_head.conv{1..4}_{ctr,offset,size}.0.{weight,bias}             Conv2d 3x3
    box_head.conv{1..4}_{ctr,offset,size}.1.{weight,bias,running_mean,running_var,
                                               num_batches_tracked}   BatchNorm2d
    box_head.conv5_{ctr,offset,size}.{weight,bias}                    Conv2d 1x1

Released checkpoints this loads (``{"net": state_dict, ...}`` files, e.g.
``OSTrack_ep0300.pth.tar``), with the matching :data:`PRESETS` entry:

    vitb_256_mae_ce_32x4_ep300/OSTrack_ep0300.pth.tar          (default)
    vitb_256_mae_32x4_ep300/OSTrack_ep0300.pth.tar
    vitb_384_mae_ce_32x4_ep300/OSTrack_ep0300.pth.tar
    vitb_384_mae_32x4_ep300/OSTrack_ep0300.pth.tar
    vitb_256_mae_ce_32x4_got10k_ep100/OSTrack_ep0100.pth.tar
    vitb_384_mae_ce_32x4_got10k_ep100/OSTrack_ep0100.pth.tar

:class:`OSTrackTracker` takes HxWx3 uint8 **BGR** frames (as the rest of autotrack) and boxes
as ``(x1, y1, x2, y2)``; the network sees RGB normalised with the ImageNet mean/std, as in
training. ``tiny_config()`` is a depth-2, dim-64 model for tests with random weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

Box = tuple[float, float, float, float]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OSTrackConfig:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    pretrain_img_size: int = 224  # sets the (unused) pos_embed shape of the checkpoint
    template_size: int = 128
    search_size: int = 256
    template_factor: float = 2.0
    search_factor: float = 4.0
    ce_loc: tuple[int, ...] = (3, 6, 9)
    ce_keep_ratio: tuple[float, ...] = (0.7, 0.7, 0.7)
    ce_template_range: str = "CTR_POINT"  # ALL, CTR_POINT or CTR_REC
    head_channels: int = 256
    clip_margin: int = 10

    @property
    def feat_sz(self) -> int:
        return self.search_size // self.patch_size

    @property
    def template_feat_sz(self) -> int:
        return self.template_size // self.patch_size


_NO_CE = dict(ce_loc=(), ce_keep_ratio=(), ce_template_range="ALL")
_384 = dict(template_size=192, search_size=384, search_factor=5.0)
PRESETS: dict[str, OSTrackConfig] = {
    "vitb_256_mae_ce_32x4_ep300": OSTrackConfig(),
    "vitb_256_mae_ce_32x4_got10k_ep100": OSTrackConfig(),
    "vitb_256_mae_32x4_ep300": OSTrackConfig(**_NO_CE),
    "vitb_384_mae_ce_32x4_ep300": OSTrackConfig(**_384),
    "vitb_384_mae_ce_32x4_got10k_ep100": OSTrackConfig(**_384),
    "vitb_384_mae_32x4_ep300": OSTrackConfig(**_384, **_NO_CE),
}


def tiny_config(**changes: object) -> OSTrackConfig:
    """A small model for tests: depth 2, dim 64, 2 heads, CE in both blocks, head width 32."""
    base = OSTrackConfig(embed_dim=64, depth=2, num_heads=2, ce_loc=(0, 1),
                         ce_keep_ratio=(0.7, 0.7), head_channels=32)
    return replace(base, **changes)


# -- backbone -------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with ``keep_ratio < 1`` it drops the search tokens the
    template attends to least (candidate elimination) between attention and MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, keep_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.keep_ratio = keep_ratio

    def forward(self, x: torch.Tensor, lens_t: int, index_s: torch.Tensor,
                template_mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm1(x))
        x = x + y
        removed = None
        if self.keep_ratio < 1:
            x, index_s, removed = eliminate(attn, x, lens_t, self.keep_ratio, index_s,
                                            template_mask)
        x = x + self.mlp(self.norm2(x))
        return x, index_s, removed


def eliminate(attn: torch.Tensor, tokens: torch.Tensor, lens_t: int, keep_ratio: float,
              index_s: torch.Tensor, template_mask: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the ``ceil(keep_ratio * L_s)`` search tokens with the highest mean attention from
    the (masked) template tokens; returns the tokens, kept and removed global indices."""
    bs, heads, _, total = attn.shape
    lens_s = total - lens_t
    keep = math.ceil(keep_ratio * lens_s)
    if keep == lens_s:
        return tokens, index_s, None
    a = attn[:, :, :lens_t, lens_t:]  # B, H, L_t, L_s
    if template_mask is not None:
        m = template_mask[:, None, :, None].expand(-1, heads, -1, lens_s)
        a = a[m].view(bs, heads, -1, lens_s)
    score = a.mean(dim=2).mean(dim=1)
    order = torch.sort(score, dim=1, descending=True)[1]
    top, rest = order[:, :keep], order[:, keep:]
    kept = tokens[:, lens_t:].gather(1, top[..., None].expand(-1, -1, tokens.shape[-1]))
    return (torch.cat([tokens[:, :lens_t], kept], dim=1), index_s.gather(1, top),
            index_s.gather(1, rest))


class VisionTransformerCE(nn.Module):
    def __init__(self, cfg: OSTrackConfig) -> None:
        super().__init__()
        d, p = cfg.embed_dim, cfg.patch_size
        self.patch_embed = PatchEmbed(p, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, (cfg.pretrain_img_size // p) ** 2 + 1, d))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, cfg.template_feat_sz ** 2, d))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, cfg.feat_sz ** 2, d))
        ratios = dict(zip(cfg.ce_loc, cfg.ce_keep_ratio))
        self.blocks = nn.Sequential(*[
            Block(d, cfg.num_heads, cfg.mlp_ratio, ratios.get(i, 1.0)) for i in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        for prm in (self.cls_token, self.pos_embed, self.pos_embed_z, self.pos_embed_x):
            nn.init.trunc_normal_(prm, std=0.02)

    def forward(self, z: torch.Tensor, x: torch.Tensor,
                template_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Template ``z`` (B,3,T,T) and search ``x`` (B,3,S,S) -> (B, L_z + L_x, D) tokens;
        search tokens removed by CE come back as zeros in their original places."""
        z = self.patch_embed(z) + self.pos_embed_z
        x = self.patch_embed(x) + self.pos_embed_x
        b, lens_z, lens_x = x.shape[0], z.shape[1], x.shape[1]
        tokens = torch.cat([z, x], dim=1)
        index_s = torch.arange(lens_x, device=x.device).repeat(b, 1)
        for blk in self.blocks:
            tokens, index_s, _ = blk(tokens, lens_z, index_s, template_mask)
        tokens = self.norm(tokens)
        z, x = tokens[:, :lens_z], tokens[:, lens_z:]
        if x.shape[1] < lens_x:
            full = x.new_zeros(b, lens_x, x.shape[2])
            x = full.scatter(1, index_s[..., None].expand(-1, -1, x.shape[2]), x)
        return torch.cat([z, x], dim=1)


# -- center head ----------------------------------------------------------------------------

def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class CenterPredictor(nn.Module):
    """Three conv towers: center score (sigmoid), normalised size (sigmoid), sub-cell offset."""

    def __init__(self, inplanes: int, channel: int, feat_sz: int) -> None:
        super().__init__()
        self.feat_sz = feat_sz
        widths = (inplanes, channel, channel // 2, channel // 4, channel // 8)
        for name, out in (("ctr", 1), ("offset", 2), ("size", 2)):
            for i in range(4):
                setattr(self, f"conv{i + 1}_{name}", _conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{name}", nn.Conv2d(widths[4], out, 1))
        for prm in self.parameters():
            if prm.dim() > 1:
                nn.init.xavier_uniform_(prm)

    def _tower(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        score = self._tower("ctr", x).sigmoid().clamp(1e-4, 1 - 1e-4)
        size = self._tower("size", x).sigmoid().clamp(1e-4, 1 - 1e-4)
        offset = self._tower("offset", x)
        return score, size, offset

    def cal_bbox(self, score: torch.Tensor, size: torch.Tensor, offset: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cx, cy, w, h) in [0, 1] of the search crop at the score peak, and the peak."""
        peak, idx = torch.max(score.flatten(1), dim=1, keepdim=True)
        iy = torch.div(idx, self.feat_sz, rounding_mode="floor").float()
        ix = (idx % self.feat_sz).float()
        gidx = idx[:, None].expand(-1, 2, 1)
        wh = size.flatten(2).gather(2, gidx).squeeze(-1)
        off = offset.flatten(2).gather(2, gidx).squeeze(-1)
        box = torch.cat([(ix + off[:, :1]) / self.feat_sz, (iy + off[:, 1:]) / self.feat_sz, wh],
                        dim=1)
        return box, peak


class OSTrack(nn.Module):
    def __init__(self, cfg: OSTrackConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = VisionTransformerCE(cfg)
        self.box_head = CenterPredictor(cfg.embed_dim, cfg.head_channels, cfg.feat_sz)

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                template_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        feat = self.backbone(template, search, template_mask)
        fs = self.cfg.feat_sz
        opt = feat[:, -fs * fs:].transpose(1, 2).reshape(feat.shape[0], -1, fs, fs)
        score, size, offset = self.box_head(opt)
        box, _ = self.box_head.cal_bbox(score, size, offset)
        return {"backbone_feat": feat, "score_map": score, "size_map": size,
                "offset_map": offset, "pred_boxes": box[:, None]}


def template_mask(cfg: OSTrackConfig, batch: int = 1, device: str | torch.device = "cpu"
                  ) -> torch.Tensor | None:
    """The template tokens whose attention decides CE (official ``generate_mask_cond``)."""
    n = cfg.template_feat_sz
    if not cfg.ce_loc or cfg.ce_template_range == "ALL":
        return None
    table = {"CTR_POINT": {8: (3, 4), 12: (5, 6), 7: (3, 4), 14: (6, 7)},
             "CTR_REC": {8: (3, 5), 12: (5, 7), 7: (3, 4)}}
    if cfg.ce_template_range not in table or n not in table[cfg.ce_template_range]:
        raise ValueError(f"CE template range {cfg.ce_template_range} with a {n}x{n} template")
    lo, hi = table[cfg.ce_template_range][n]
    mask = torch.zeros(batch, n, n, dtype=torch.bool, device=device)
    mask[:, lo:hi, lo:hi] = True
    return mask.flatten(1)


def build_ostrack(cfg: OSTrackConfig | str = "vitb_256_mae_ce_32x4_ep300") -> OSTrack:
    if isinstance(cfg, str):
        cfg = PRESETS[cfg]
    return OSTrack(cfg).eval()


def load_ostrack(path: str | Path, cfg: OSTrackConfig | str = "vitb_256_mae_ce_32x4_ep300",
                 trusted_pickle: bool = False) -> OSTrack:
    """Build the model and load an official checkpoint (``{"net": ...}``) strictly. Files are
    read with ``weights_only=True`` unless ``trusted_pickle`` (training checkpoints that
    pickle the official ``settings`` object need it, and the official code importable)."""
    model = build_ostrack(cfg)
    ckpt = torch.load(str(path), map_location="cpu", weights_only=not trusted_pickle)
    state = ckpt["net"] if isinstance(ckpt, dict) and "net" in ckpt else ckpt
    model.load_state_dict(state, strict=True)
    return model


# -- crops and the tracker ------------------------------------------------------------------

# a crop over this many times the output's side is drawn at the output's scale (memory)
LARGE_CROP_FACTOR = 8

def sample_target(image: np.ndarray, box_xywh: list[float], factor: float, output_sz: int
                  ) -> tuple[np.ndarray, float]:
    """Square crop of side ``ceil(sqrt(w*h) * factor)`` around the box centre, zero-padded
    outside the image and resized to ``output_sz`` (as the official ``sample_target``,
    including its rounding and its one-pixel right/bottom padding quirk).

    A crop much larger than the output (a box spanning a huge frame, a state's box far off
    the frame) is built at the output's scale instead, so its memory stays bounded."""
    x, y, w, h = box_xywh
    crop_sz = math.ceil(math.sqrt(w * h) * factor)
    if crop_sz < 1:
        raise ValueError("box too small to crop")
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    x2, y2 = x1 + crop_sz, y1 + crop_sz
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad = max(x2 - image.shape[1] + 1, 0)
    y2_pad = max(y2 - image.shape[0] + 1, 0)
    crop = image[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad, :]
    scale = output_sz / crop_sz
    if crop.size == 0 or crop_sz > LARGE_CROP_FACTOR * output_sz:
        return _scaled_crop(crop, (y1_pad, x1_pad), scale, output_sz, image.dtype), scale
    crop = cv2.copyMakeBorder(crop, y1_pad, y2_pad, x1_pad, x2_pad, cv2.BORDER_CONSTANT)
    return cv2.resize(crop, (output_sz, output_sz)), scale


def _scaled_crop(visible: np.ndarray, offset: tuple[int, int], scale: float, output_sz: int,
                 dtype: np.dtype) -> np.ndarray:
    """The padded crop drawn straight at ``output_sz``: the image's ``visible`` part resized
    by ``scale`` and pasted at its offset on a zero canvas (never the full-size padding)."""
    canvas = np.zeros((output_sz, output_sz, 3), dtype)
    if visible.size == 0:
        return canvas
    top, left = (min(output_sz, round(v * scale)) for v in offset)
    height = min(output_sz - top, max(1, round(visible.shape[0] * scale)))
    width = min(output_sz - left, max(1, round(visible.shape[1] * scale)))
    if height > 0 and width > 0:
        canvas[top:top + height, left:left + width] = cv2.resize(
            visible, (width, height), interpolation=cv2.INTER_AREA)
    return canvas


def hann2d(sz: int) -> torch.Tensor:
    w = 0.5 * (1 - torch.cos((2 * math.pi / (sz + 1)) * torch.arange(1, sz + 1).float()))
    return w.reshape(1, 1, -1, 1) * w.reshape(1, 1, 1, -1)


def _to_tensor(patch_rgb: np.ndarray) -> torch.Tensor:
    t = torch.tensor(patch_rgb).float().permute(2, 0, 1)[None]
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    return ((t / 255.0) - mean) / std


@dataclass
class OSTrackState:
    template: torch.Tensor  # the normalised template crop, 1x3xTxT
    box: list[float] = field(default_factory=list)  # x, y, w, h
    score: float = 1.0
    step: int = 0


class OSTrackTracker:
    """The official test-time loop around :class:`OSTrack`: template once at init, then per
    frame a search crop at the last box, Hann-windowed peak, box mapped back and clipped."""

    kind = "ostrack"

    def __init__(self, model: OSTrack) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        self.window = hann2d(self.cfg.feat_sz)
        self.mask = template_mask(self.cfg)

    def init(self, frame: np.ndarray, box: Box) -> OSTrackState:
        x1, y1, x2, y2 = (float(v) for v in box)
        xywh = [x1, y1, x2 - x1, y2 - y1]
        rgb = _check_frame(frame)
        patch, _ = sample_target(rgb, xywh, self.cfg.template_factor, self.cfg.template_size)
        return OSTrackState(template=_to_tensor(patch), box=xywh)

    @torch.no_grad()
    def update(self, frame: np.ndarray, state: OSTrackState
               ) -> tuple[Box, float, OSTrackState]:
        rgb = _check_frame(frame)
        h_img, w_img = rgb.shape[:2]
        cfg = self.cfg
        patch, resize = sample_target(rgb, state.box, cfg.search_factor, cfg.search_size)
        out = self.model(state.template, _to_tensor(patch), self.mask)
        response = self.window * out["score_map"]
        box, _ = self.model.box_head.cal_bbox(response, out["size_map"], out["offset_map"])
        idx = int(response.flatten(1).argmax(1))
        score = float(out["score_map"].flatten(1)[0, idx])
        cx, cy, w, h = (box[0] * cfg.search_size / resize).tolist()
        px, py, pw, ph = state.box
        half = 0.5 * cfg.search_size / resize
        cx, cy = cx + (px + 0.5 * pw - half), cy + (py + 0.5 * ph - half)
        new = clip_box([cx - 0.5 * w, cy - 0.5 * h, w, h], h_img, w_img, cfg.clip_margin)
        state = OSTrackState(template=state.template, box=new, score=score, step=state.step + 1)
        x, y, w, h = new
        return (x, y, x + w, y + h), score, state


def clip_box(box: list[float], h: int, w: int, margin: int = 0) -> list[float]:
    x1, y1, bw, bh = box
    x2, y2 = x1 + bw, y1 + bh
    x1 = min(max(0, x1), w - margin)
    x2 = min(max(margin, x2), w)
    y1 = min(max(0, y1), h - margin)
    y2 = min(max(margin, y2), h)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 \
            or frame.dtype != np.uint8:
        raise ValueError("frame must be an HxWx3 uint8 BGR image")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
