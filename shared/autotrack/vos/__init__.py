"""Video object segmentation: pixel masks that follow objects through a video.

Every segmenter (SAM2, XMem, SAM3's concept tracker) implements :class:`VideoSegmenter` from
:mod:`autotrack.vos.base`; click/box-to-mask models implement :class:`Interactor`.
"""

from autotrack.vos.base import (
    Interactor,
    InteractorResult,
    MemoryStats,
    ObjectPrompt,
    VideoSegmenter,
)

__all__ = ["Interactor", "InteractorResult", "MemoryStats", "ObjectPrompt", "VideoSegmenter"]
