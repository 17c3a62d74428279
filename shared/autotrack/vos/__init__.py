"""Video object segmentation: pixel masks that follow objects through a video.

Every segmenter (SAM2, XMem, SAM3's concept tracker) implements :class:`VideoSegmenter` from
:mod:`autotrack.vos.base`; click/box-to-mask models implement :class:`Interactor`. The model
packages (``autotrack.vos.sam2``, ``.xmem``, ``.sam3``) import torch; this module does not.
"""

from autotrack.vos.base import (
    Interactor,
    InteractorResult,
    MemoryStats,
    ObjectPrompt,
    VideoSegmenter,
)
from autotrack.vos.mask_tracks import MaskTrack
from autotrack.vos.offline import SegmentationResult, segment_video
from autotrack.vos.prompts import PromptFile, load_prompts

__all__ = [
    "Interactor", "InteractorResult", "MaskTrack", "MemoryStats", "ObjectPrompt", "PromptFile",
    "SegmentationResult", "VideoSegmenter", "load_prompts", "segment_video",
]
