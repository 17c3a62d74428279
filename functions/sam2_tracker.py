"""SAM2.1 (Meta's official sam2 package, Apache-2.0) as a cvat-sdk tracking function that
follows rectangles, polygons and masks as masks.

Register it with CVAT, then serve CVAT's interactive tracking requests from this machine:
`cvat-cli function create-native "SAM2 tracker" --function-file functions/sam2_tracker.py`,
then `cvat-cli function run-agent FUNCTION_ID --function-file functions/sam2_tracker.py [-p NAME=TYPE:VALUE]`.

Weights: an official checkpoint, -p checkpoint=str:PATH or AUTOTRACK_SAM2_CHECKPOINT (see
functions/sam2_interactor.py).

Parameters (`-p name=type:value`): checkpoint=str:PATH, config=str:sam2.1_hiera_t,
image_size=int:1024, device=str:cpu|cuda:0, random_init=bool:false (tests only),
session_ttl_s=float:900 (each shape keeps its own live segmenter while the agent keeps its
state; one idle longer is started again from the tracking state), max_sessions=int:0 to keep
none (every frame restarts from the state: least memory, least quality). Each shape comes back as its own type
(a rectangle as its mask's box); a lost object is reported as not found on that frame.
The logic lives in autotrack.cvat.sdk.masks.
"""

from autotrack.cvat.sdk.masks import create_sam2_tracker as create

__all__ = ["create"]
