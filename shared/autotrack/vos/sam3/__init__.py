"""SAM3 (Meta's ``sam3`` package, SAM License, optional extra): label names as text prompts.

:class:`Sam3TextDetector` finds every instance of each prompt on an image;
:class:`Sam3ConceptTracker` follows them through a video with persistent ids (a
:class:`autotrack.vos.base.VideoSegmenter`). Both build from :mod:`.model`, which assembles
SAM3 from the package's modules and loads Meta's ``sam3.pt``. Importing this package needs
torch and sam3; nothing else in autotrack imports it unless asked for SAM3.
"""

from autotrack.vos.sam3.concept import (
    ConceptOptions,
    Sam3ConceptTracker,
    build_sam3_concept_tracker,
)
from autotrack.vos.sam3.detector import (
    Sam3TextDetector,
    build_sam3_text_detector,
    prompt_texts,
)
from autotrack.vos.sam3.model import (
    BPE_ENV,
    CHECKPOINT_ENV,
    RANDOM,
    Sam3Config,
    build_sam3_image_model,
)

__all__ = [
    "BPE_ENV",
    "CHECKPOINT_ENV",
    "RANDOM",
    "ConceptOptions",
    "Sam3Config",
    "Sam3ConceptTracker",
    "Sam3TextDetector",
    "build_sam3_concept_tracker",
    "build_sam3_image_model",
    "build_sam3_text_detector",
    "prompt_texts",
]
