"""Helpers several test files share: loading a Nuclio main.py, and editing saved tracker state
so that only a tracker's semantic checks can refuse it."""

from __future__ import annotations

import base64
import hashlib
import json
from types import ModuleType

import numpy as np

from autotrack.cvat.nuclio.handler_module import load_handler_module
from conftest import REPO_ROOT

SERVERLESS = REPO_ROOT / "serverless"


def load_main(function: str) -> ModuleType:
    """serverless/<function>/nuclio/main.py as its own module (every main.py is called main)."""
    return load_handler_module(SERVERLESS / function / "nuclio" / "main.py",
                               f"autotrack_nuclio_{function}_main")


def resign(envelope: dict) -> str:
    """Re-compute the (keyless) digest so that only the semantic checks can refuse it."""
    canonical = json.dumps(envelope["payload"], sort_keys=True, separators=(",", ":")).encode()
    envelope["digest"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
    return json.dumps(envelope)


def edit_array(envelope: dict, key: str, fn) -> None:
    """Replace the state's ``tracks[key]`` array by ``fn`` of it."""
    _edit_array_object(envelope["payload"]["tracks"][key], fn)


def edit_array_field(envelope: dict, key: str, fn) -> None:
    """Replace the state's ``payload[key]`` array by ``fn`` of it."""
    _edit_array_object(envelope["payload"][key], fn)


def ndarray_spec(values, dtype: str = "<f8") -> dict:
    """A state payload's array object (the codec's typed base64 form) holding ``values``."""
    array = np.asarray(values, dtype=dtype)
    return {"__ndarray__": {"dtype": array.dtype.str, "shape": list(array.shape),
                            "data": base64.b64encode(array.tobytes()).decode()}}


def _edit_array_object(value: dict, fn) -> None:
    spec = value["__ndarray__"]
    array = np.frombuffer(base64.b64decode(spec["data"]),
                          dtype=spec["dtype"]).reshape(spec["shape"]).copy()
    array = np.asarray(fn(array))
    spec.update(dtype=array.dtype.str, shape=list(array.shape),
                data=base64.b64encode(array.tobytes()).decode())


class RecordingSegmenter:
    """Wraps a video segmenter and keeps every mask it returned (to compare with what a
    writer made of them)."""

    def __init__(self, inner):
        self.inner, self.masks = inner, []

    def reset(self):
        self.inner.reset()

    def forget(self, object_id):
        self.inner.forget(object_id)

    def memory_stats(self):
        return self.inner.memory_stats()

    def step(self, image, prompts=()):
        out = self.inner.step(image, prompts)
        self.masks.append({k: np.asarray(v, dtype=bool).copy() for k, v in out.items()})
        return out
