"""SAM3's image model, assembled from the ``sam3`` package's own modules, and its weights.

Why not ``sam3.model_builder.build_sam3_image_model``: in sam3 0.1.4 it cannot build on a
machine without CUDA (its position encoding and box decoder precompute caches on a hardcoded
``"cuda"`` device, facebookresearch/sam3#587 and #550), and every size is a literal inside it,
so no test-sized model can come out of it. :func:`build_sam3_image_model` wires the same
classes (ViT, dual ViTDet neck, VE text encoder, fusion encoder, box decoder, dot-product
scorer, geometry encoder, segmentation head) the same way; with :meth:`Sam3Config.official`
its ``state_dict`` has exactly the official keys and shapes (tested), so the official
``sam3.pt`` loads into it, and the caches fill lazily on whatever device the model runs on.

Weights: ``checkpoint`` is a path to Meta's ``sam3.pt`` (huggingface.co/facebook/sam3, gated),
else ``$AUTOTRACK_SAM3_CHECKPOINT``, else the Hugging Face cache or a download when online
(``AUTOTRACK_OFFLINE`` unset). :data:`RANDOM` builds seeded random weights instead, for tests.

The tokenizer's vocabulary (CLIP's ``bpe_simple_vocab_16e6.txt.gz``) is not in the sam3 0.1.4
wheel (facebookresearch/sam3#339): ``$AUTOTRACK_SAM3_BPE`` names it, else it is looked for
beside the checkpoint, where sam3 expects it, and in ``open_clip``. Random weights without one
use a byte-level vocabulary (every byte one token): the real tokenizer code, no merges.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autotrack.checkpoints import read_weights_only
from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.models import downloads_allowed

CHECKPOINT_ENV = "AUTOTRACK_SAM3_CHECKPOINT"
BPE_ENV = "AUTOTRACK_SAM3_BPE"
RANDOM = "random"  # checkpoint value: seeded random weights (tests, timing); masks are noise
HF_REPO = "facebook/sam3"
HF_CHECKPOINT = "sam3.pt"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
_MISSING_SHOWN = 5

__all__ = [
    "BPE_ENV",
    "CHECKPOINT_ENV",
    "RANDOM",
    "Sam3Config",
    "build_sam3_image_model",
    "load_sam3_weights",
    "resolve_bpe",
    "resolve_checkpoint",
]


@dataclass(frozen=True)
class Sam3Config:
    """Every size of SAM3's image model; :meth:`official` is Meta's, :meth:`tiny` a test size.

    ``image_size`` is the square side the processor resizes every frame to; it must be a
    multiple of ``patch_size`` and give a token grid the ViT's ``window`` divides."""

    image_size: int = 1008
    patch_size: int = 14
    vit_dim: int = 1024
    vit_depth: int = 32
    vit_heads: int = 16
    vit_mlp_ratio: float = 4.625
    vit_window: int = 24
    vit_global_blocks: tuple[int, ...] = (7, 15, 23, 31)
    vit_pretrain_size: int = 336
    d_model: int = 256
    heads: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_queries: int = 200
    geometry_layers: int = 3
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch "
                             f"size {self.patch_size}")
        grid = self.image_size // self.patch_size
        if grid % self.vit_window:
            raise ValueError(f"the {grid}x{grid} token grid is not a multiple of the ViT "
                             f"window {self.vit_window}")
        if not all(0 <= b < self.vit_depth for b in self.vit_global_blocks):
            raise ValueError(f"global attention blocks {self.vit_global_blocks} lie outside "
                             f"the ViT's {self.vit_depth} blocks")
        for name in ("vit_dim", "d_model", "text_width"):
            heads = {"vit_dim": self.vit_heads, "d_model": self.heads,
                     "text_width": self.text_heads}[name]
            if getattr(self, name) % heads:
                raise ValueError(f"{name} {getattr(self, name)} is not divisible by {heads} heads")

    @classmethod
    def official(cls) -> Sam3Config:
        """SAM3 as released (848M parameters, 1008 px): what ``sam3.pt`` holds."""
        return cls()

    @classmethod
    def tiny(cls, image_size: int = 112) -> Sam3Config:
        """The same architecture with every stage kept but shrunk: about 4M parameters, for
        tests with random weights (a frame takes milliseconds on a CPU)."""
        return cls(image_size=image_size, vit_dim=64, vit_depth=2, vit_heads=2,
                   vit_mlp_ratio=2.0, vit_window=image_size // 14 // 2, vit_global_blocks=(1,),
                   vit_pretrain_size=56, d_model=64, heads=2, ffn_dim=128, encoder_layers=1,
                   decoder_layers=1, num_queries=16, geometry_layers=1, text_width=64,
                   text_heads=2, text_layers=1)

    @classmethod
    def named(cls, name: str | Sam3Config) -> Sam3Config:
        """``"official"`` or ``"tiny"`` (or ``"tiny:224"``, a tiny model at 224 px)."""
        if isinstance(name, Sam3Config):
            return name
        key, _, size = str(name).strip().lower().partition(":")
        if key == "official" and not size:
            return cls.official()
        if key == "tiny":
            try:
                return cls.tiny(int(size)) if size else cls.tiny()
            except ValueError as exc:
                raise AutotrackError(f"bad SAM3 config {name!r}: {exc}") from None
        raise AutotrackError(f"unknown SAM3 config {name!r}: use 'official' or 'tiny'")

    def with_image_size(self, image_size: int) -> Sam3Config:
        return replace(self, image_size=image_size)


def build_sam3_image_model(
    config: Sam3Config | str = "official",
    *,
    checkpoint: str | Path | None = None,
    bpe_path: str | Path | None = None,
    device: str | None = None,
    seed: int = 0,
) -> Any:
    """A ``sam3.model.sam3_image.Sam3Image`` in eval mode, weights loaded (see the module doc).

    ``checkpoint`` None resolves ``$AUTOTRACK_SAM3_CHECKPOINT`` or the Hugging Face file and
    fails with one line naming the variable when there is none; :data:`RANDOM` gives seeded
    random weights."""
    import torch

    config = Sam3Config.named(config)
    weights = resolve_checkpoint(checkpoint)
    vocabulary = resolve_bpe(bpe_path, checkpoint=weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _assemble(config, vocabulary)
        if weights is None:
            _initialise_empty_parameters(model)
    if weights is not None:
        load_sam3_weights(model, weights)
    if not torch.cuda.is_available():
        _skip_box_pooling_without_boxes(model.geometry_encoder)
    model.eval()
    return model.to(device or "cpu")


def resolve_checkpoint(checkpoint: str | Path | None) -> Path | None:
    """The ``sam3.pt`` to load, or None for :data:`RANDOM`; one-line error when none exists."""
    if checkpoint is None:
        checkpoint = os.environ.get(CHECKPOINT_ENV, "").strip() or None
    if checkpoint is not None and str(checkpoint).strip().lower() == RANDOM:
        return None
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"SAM3 checkpoint {path} does not exist (set {CHECKPOINT_ENV} "
                                     f"to Meta's sam3.pt from huggingface.co/{HF_REPO})")
        return path
    return _hugging_face_checkpoint()


def resolve_bpe(bpe_path: str | Path | None = None, *,
                checkpoint: Path | None = None) -> Path:
    """CLIP's BPE vocabulary for SAM3's tokenizer (see the module doc for where it is sought)."""
    if bpe_path is None:
        bpe_path = os.environ.get(BPE_ENV, "").strip() or None
    if bpe_path is not None:
        path = Path(bpe_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"SAM3 tokenizer vocabulary {path} does not exist "
                                     f"(set {BPE_ENV} to {BPE_NAME})")
        return path
    for candidate in _bpe_candidates(checkpoint):
        if candidate.is_file():
            return candidate
    if checkpoint is None:  # random weights: any vocabulary exercises the tokenizer
        return byte_level_bpe()
    raise ModelNotFoundError(
        f"SAM3's tokenizer vocabulary {BPE_NAME} was not found (the sam3 wheel does not ship "
        f"it): set {BPE_ENV} to it, or put it beside {checkpoint.name}; it is CLIP's file, in "
        "github.com/facebookresearch/sam3 assets/, github.com/openai/CLIP clip/, or the "
        "open_clip_torch package")


def byte_level_bpe(folder: str | Path | None = None) -> Path:
    """A vocabulary with no merges, so every byte of a prompt is one token (random weights)."""
    path = Path(folder or tempfile.gettempdir()) / "autotrack-sam3-byte-bpe.txt.gz"
    if not path.is_file():
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with gzip.open(partial, "wt", encoding="utf-8") as f:
            f.write("#version: 0.2 (no merges: byte-level tokens)\n")
        partial.replace(path)
    return path


def load_sam3_weights(model: Any, checkpoint: str | Path) -> None:
    """Load the detector half of Meta's ``sam3.pt`` (keys ``detector.*``) into the image
    model: safely (``weights_only``), and refusing a file that leaves any weight unset."""
    path = Path(checkpoint)
    state = read_weights_only(path, ModelNotFoundError)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ModelNotFoundError(f"{path} is not a SAM3 checkpoint: no state dict in it")
    prefix = "detector."
    weights = {key[len(prefix):]: value for key, value in state.items()
               if isinstance(key, str) and key.startswith(prefix)}
    if not weights:
        raise ModelNotFoundError(f"{path} is not a SAM3 checkpoint: no 'detector.*' weights "
                                 f"(expected Meta's {HF_CHECKPOINT} from huggingface.co/{HF_REPO})")
    expected = model.state_dict()
    wrong = [key for key, value in weights.items()
             if key in expected and tuple(value.shape) != tuple(expected[key].shape)]
    if wrong:
        raise ModelNotFoundError(
            f"{path} does not fit this SAM3 config: {len(wrong)} weights differ in shape "
            f"(first {wrong[0]}); load it into the official config")
    missing, _ = model.load_state_dict(weights, strict=False)
    if missing:
        raise ModelNotFoundError(
            f"{path} leaves {len(missing)} SAM3 weights unset "
            f"({', '.join(missing[:_MISSING_SHOWN])}...): not the official checkpoint?")


def _initialise_empty_parameters(model: Any) -> None:
    """The text encoder allocates two parameters with ``torch.empty`` (a checkpoint fills
    them): give random weights CLIP's initial values instead of whatever memory held."""
    import torch.nn as nn

    text = model.backbone.language_backbone.encoder
    nn.init.normal_(text.positional_embedding, std=0.01)
    if isinstance(text.text_projection, nn.Parameter):
        nn.init.normal_(text.text_projection, std=text.width ** -0.5)


def _skip_box_pooling_without_boxes(encoder: Any) -> None:
    """Let a text-only prompt run where torch has no CUDA driver.

    The geometry encoder pools image features under every box prompt, staging the scale in
    pinned memory first, which needs a CUDA driver even when nothing runs on a GPU. A text
    prompt has no boxes, so that pooling yields an empty tensor: skipping it then changes no
    number. Prompts with boxes still take the package's own path."""
    original = encoder._encode_boxes

    def encode_boxes(boxes: Any, boxes_mask: Any, boxes_labels: Any, img_feats: Any) -> Any:
        pool = encoder.boxes_pool_project
        if boxes.shape[0] or pool is None:
            return original(boxes, boxes_mask, boxes_labels, img_feats)
        encoder.boxes_pool_project = None
        try:
            return original(boxes, boxes_mask, boxes_labels, img_feats)
        finally:
            encoder.boxes_pool_project = pool

    encoder._encode_boxes = encode_boxes


def _hugging_face_checkpoint() -> Path:
    offline = not downloads_allowed()
    hint = (f"set {CHECKPOINT_ENV} to Meta's {HF_CHECKPOINT} (huggingface.co/{HF_REPO}, gated: "
            f"accept its license, then `hf download {HF_REPO} {HF_CHECKPOINT}`)")
    try:
        import huggingface_hub
    except ImportError:
        raise ModelNotFoundError(f"no SAM3 checkpoint: {hint}") from None
    cached = huggingface_hub.try_to_load_from_cache(HF_REPO, HF_CHECKPOINT)
    if isinstance(cached, str) and os.path.isfile(cached):
        return Path(cached)
    if offline:
        raise ModelNotFoundError(f"no SAM3 checkpoint (offline): {hint}")
    try:
        return Path(huggingface_hub.hf_hub_download(HF_REPO, HF_CHECKPOINT))
    except Exception as exc:
        reason = " ".join(str(exc).split()).split(". ")[0][:160]  # hub errors run on
        raise ModelNotFoundError(f"no SAM3 checkpoint: {hint}; the download failed "
                                 f"({type(exc).__name__}: {reason})") from None


def _bpe_candidates(checkpoint: Path | None) -> list[Path]:
    candidates = []
    if checkpoint is not None:
        candidates.append(checkpoint.with_name(BPE_NAME))
    sam3 = importlib.util.find_spec("sam3")
    if sam3 is not None and sam3.origin:
        package = Path(sam3.origin).parent
        # where model_builder looks (a source checkout), and where newer releases put it
        candidates += [package.parent / "assets" / BPE_NAME, package / "assets" / BPE_NAME]
    open_clip = importlib.util.find_spec("open_clip")
    if open_clip is not None and open_clip.origin:
        candidates.append(Path(open_clip.origin).parent / BPE_NAME)
    return candidates


def _assemble(config: Sam3Config, bpe_path: Path) -> Any:
    """Sam3Image wired as ``sam3.model_builder.build_sam3_image_model`` wires it, sized by
    ``config``, with position and box caches left to fill on the model's own device."""
    import torch.nn as nn
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.model_misc import (
        MLP,
        DotProductScoring,
        TransformerWrapper,
    )
    from sam3.model.model_misc import MultiheadAttentionWrapper as Attention
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_image import Sam3Image
    from sam3.model.text_encoder_ve import VETextEncoder
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone

    c = config
    d = c.d_model

    def position_encoding() -> Any:
        return PositionEmbeddingSine(num_pos_feats=d, normalize=True, scale=None,
                                     temperature=10000, precompute_resolution=None)

    def attention(batch_first: bool | None, dropout: float = 0.1) -> Any:
        extra = {} if batch_first is None else {"batch_first": batch_first}
        return Attention(num_heads=c.heads, dropout=dropout, embed_dim=d, **extra)

    vit = ViT(
        img_size=c.image_size, pretrain_img_size=c.vit_pretrain_size, patch_size=c.patch_size,
        embed_dim=c.vit_dim, depth=c.vit_depth, num_heads=c.vit_heads,
        mlp_ratio=c.vit_mlp_ratio, norm_layer="LayerNorm", drop_path_rate=0.1, qkv_bias=True,
        use_abs_pos=True, tile_abs_pos=True, global_att_blocks=c.vit_global_blocks,
        rel_pos_blocks=(), use_rope=True, use_interp_rope=True, window_size=c.vit_window,
        pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
        return_interm_layers=False, bias_patch_embed=False, compile_mode=None,
    )
    neck = Sam3DualViTDetNeck(position_encoding=position_encoding(), d_model=d,
                              scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=vit,
                              add_sam2_neck=False)
    text = VETextEncoder(tokenizer=SimpleTokenizer(bpe_path=str(bpe_path)), d_model=d,
                         width=c.text_width, heads=c.text_heads, layers=c.text_layers)
    backbone = SAM3VLBackbone(visual=neck, text=text, scalp=1)

    encoder = TransformerEncoderFusion(
        layer=TransformerEncoderLayer(
            activation="relu", d_model=d, dim_feedforward=c.ffn_dim, dropout=0.1,
            pos_enc_at_attn=True, pos_enc_at_cross_attn_keys=False,
            pos_enc_at_cross_attn_queries=False, pre_norm=True,
            self_attention=attention(True), cross_attention=attention(True)),
        num_layers=c.encoder_layers, d_model=d, num_feature_levels=1, frozen=False,
        use_act_checkpoint=True, add_pooled_text_to_img_feat=False, pool_text_with_mask=True,
    )
    decoder = TransformerDecoder(
        layer=TransformerDecoderLayer(
            activation="relu", d_model=d, dim_feedforward=c.ffn_dim, dropout=0.1,
            cross_attention=attention(None), n_heads=c.heads, use_text_cross_attention=True),
        num_layers=c.decoder_layers, num_queries=c.num_queries, return_intermediate=True,
        box_refine=True, num_o2m_queries=0, dac=True, boxRPB="log", d_model=d, frozen=False,
        interaction_layer=None, dac_use_selfatt_ln=True,
        resolution=None, stride=None,  # the official c.image_size/patch_size cache is on cuda
        use_act_checkpoint=True, presence_token=True,
    )
    transformer = TransformerWrapper(encoder=encoder, decoder=decoder, d_model=d)
    scoring = DotProductScoring(
        d_model=d, d_proj=d,
        prompt_mlp=MLP(input_dim=d, hidden_dim=c.ffn_dim, output_dim=d, num_layers=2,
                       dropout=0.1, residual=True, out_norm=nn.LayerNorm(d)))
    segmentation_head = UniversalSegmentationHead(
        hidden_dim=d, upsampling_stages=3, aux_masks=False, presence_head=False,
        dot_product_scorer=None, act_ckpt=True, cross_attend_prompt=attention(None, 0),
        pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode="nearest",
                                   hidden_dim=d, compile_mode=None),
    )
    geometry_encoder = SequenceGeometryEncoder(
        pos_enc=position_encoding(), encode_boxes_as_points=False, points_direct_project=True,
        points_pool=True, points_pos_enc=True, boxes_direct_project=True, boxes_pool=True,
        boxes_pos_enc=True, d_model=d, num_layers=c.geometry_layers,
        layer=TransformerEncoderLayer(
            activation="relu", d_model=d, dim_feedforward=c.ffn_dim, dropout=0.1,
            pos_enc_at_attn=False, pre_norm=True, self_attention=attention(False),
            pos_enc_at_cross_attn_queries=False, pos_enc_at_cross_attn_keys=True,
            cross_attention=attention(False)),
        use_act_ckpt=True, add_cls=True, add_post_encode_proj=True,
    )
    return Sam3Image(
        backbone=backbone, transformer=transformer, input_geometry_encoder=geometry_encoder,
        segmentation_head=segmentation_head, num_feature_levels=1, o2m_mask_predict=True,
        dot_prod_scoring=scoring, use_instance_query=False, multimask_output=True,
        inst_interactive_predictor=None, matcher=None,
    )
