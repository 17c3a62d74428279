"""XMem (Cheng & Schwing, ECCV 2022; MIT) as a cvat-sdk tracking function that follows
rectangles, polygons and masks as masks.

Register it with CVAT, then serve CVAT's interactive tracking requests from this machine:
`cvat-cli function create-native "XMem" --function-file functions/xmem.py`, then
`cvat-cli function run-agent FUNCTION_ID --function-file functions/xmem.py [-p NAME=TYPE:VALUE]`.

Weights: XMem.pth from https://github.com/hkchengrex/XMem/releases/tag/v1.0, passed as
-p checkpoint=str:PATH or AUTOTRACK_XMEM_CHECKPOINT.

Parameters (`-p name=type:value`): checkpoint=str:PATH, size=int:480 (the shorter side XMem
works at), device=str:cpu|cuda:0, random_init=bool:false (tests only),
session_ttl_s=float:900 (each shape keeps its own live segmenter while the agent keeps its
state; one idle longer restarts from the state), max_sessions=int:0 to keep none. A rectangle starts as a
filled box mask and comes back as its mask's box; a lost object is reported as not found.
The logic lives in autotrack.cvat.sdk.masks.
"""

from autotrack.cvat.sdk.masks import create_xmem_tracker as create

__all__ = ["create"]
