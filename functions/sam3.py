"""SAM3 (Meta's sam3 package, SAM License) as a cvat-sdk detection function for cvat-cli:
the label names are text prompts, and each instance found comes back as a mask.

`cvat-cli task auto-annotate TASK --function-file functions/sam3.py -p labels=str:car,person`

Parameters (`-p name=type:value`): labels=str:car,person (required; the task's label names),
checkpoint=str:/path/sam3.pt (default $AUTOTRACK_SAM3_CHECKPOINT or the Hugging Face file),
device=str:cuda, image_size=int:1008, min_score=float:0.3, conf=float:0.5,
bpe=str:/path/bpe_simple_vocab_16e6.txt.gz. Add --conv-mask-to-poly for polygons.
The logic lives in autotrack.cvat.sdk.sam3.
"""

from autotrack.cvat.sdk.sam3 import create_sam3 as create

__all__ = ["create"]
