"""SAM2.1 (Meta's official sam2 package, Apache-2.0) as a cvat-sdk interaction function.

Register it with CVAT, then serve CVAT's interactor requests (AI Tools -> Interactors) from
this machine: `cvat-cli function create-native "SAM2" --function-file functions/sam2_interactor.py`,
then `cvat-cli function run-agent FUNCTION_ID --function-file functions/sam2_interactor.py [-p NAME=TYPE:VALUE]`.

Weights: download an official checkpoint (e.g.
https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt) and pass
-p checkpoint=str:PATH or set AUTOTRACK_SAM2_CHECKPOINT.

Parameters (`-p name=type:value`): checkpoint=str:PATH, config=str:sam2.1_hiera_t (must match
the checkpoint: sam2.1_hiera_t/s/b+/l), image_size=int:1024 (a multiple of 32; smaller is
faster and coarser), device=str:cpu|cuda:0, random_init=bool:false (seeded random weights,
tests only). Clicks and/or a box give one mask.
The logic lives in autotrack.cvat.sdk.masks.
"""

from autotrack.cvat.sdk.masks import create_sam2_interactor as create

__all__ = ["create"]
