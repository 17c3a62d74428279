"""A detector (YOLOX-Nano by default) and ByteTrack's association as a cvat-sdk tracking function.

Register it with CVAT, then serve CVAT's interactive tracking requests from this machine:
`cvat-cli function create-native "ByteTrack" --function-file functions/bytetrack.py`, then
`cvat-cli function run-agent FUNCTION_ID --function-file functions/bytetrack.py [-p NAME=TYPE:VALUE]`.

Parameters (`-p name=type:value`): detector=str:yolox-nano (a registry name or model file),
device=str:cuda, reid=str: (no appearance gallery; default person-reid-0248), label=str:person
(restrict every object to one class; default: each object's class from the detection its
rectangle overlaps), track_buffer=int:30 (frames a lost object coasts), report_lost=bool:false
(None for an object no detection matched, instead of its coasting box). Tracks rectangles only.
The logic lives in autotrack.cvat.sdk.bytetrack.
"""

from autotrack.cvat.sdk.bytetrack import create_bytetrack as create

__all__ = ["create"]
