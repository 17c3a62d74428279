"""Regenerate tests/fixtures/xmem_parity.npz by running the *official* XMem code.

Usage (the official code is run, never imported by the package or the tests)::

    git clone https://github.com/hkchengrex/XMem /tmp/xmem-official   # any checkout
    .venv/bin/python tools/xmem_parity_fixture.py /tmp/xmem-official \
        [--data ../shared/data] [--out tests/fixtures/xmem_parity.npz]

Only ``model/``, ``inference/{inference_core,memory_manager,kv_memory_store}.py`` and
``util/tensor_util.py`` of the checkout are used; the one shim is that the ResNet builders are
called with ``pretrained=False`` (no download: every weight is replaced anyway).

What it does: builds the official ``XMem`` network with default widths, loads
``autotrack.vos.xmem.checkpoint.random_state_dict(seed=0)`` into it strictly (62M weights are
not stored: the test regenerates them bit for bit from the seed), and runs the official
``InferenceCore`` on real bedroom frames (``videos/bedroom``), preprocessed by
``autotrack.vos.xmem.segmenter.preprocess_frame`` at short side ``SIZE``, through each
scenario below with tiny memory budgets, so working-memory insertion, deep updates,
consolidation into the long-term memory and removal of obsolete long-term elements all run.
Long-term usage counting is on (``enable_long_term_count_usage``), as in the official
interactive demo. Stored per scenario ``s``: prompt label images (``s.prompt{t}``, full frame,
0 = none), a digest of the network inputs, the official probabilities at processing size
sampled every ``STRIDE`` pixels (``s.prob``, float32), the official full-size label images
after eval.py's bilinear upsampling and argmax (``s.labels``), and the official memory sizes
after each frame (``s.trace``: working-memory frames, long-term elements).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SIZE = 80
STRIDE = 2
SEED = 0

# scenario -> frames, memory budget, prompts {frame: {object id: shape}}
SCENARIOS = {
    # two objects on frame 0, a correction of object 2 on frame 3 (a partial prompt)
    "a": {"frames": list(range(8)),
          "budget": dict(mem_every=2, deep_update_every=-1, top_k=30, max_mid_term_frames=3,
                         min_mid_term_frames=2, max_long_term_elements=20, num_prototypes=8),
          "prompts": {0: {1: ("rect", 100, 200, 350, 420), 2: ("ellipse", 650, 300, 120, 160)},
                      3: {2: ("ellipse", 630, 310, 110, 150)}}},
    # a third object appears on frame 2: a second object group through consolidation
    "b": {"frames": list(range(20, 26)),
          "budget": dict(mem_every=1, deep_update_every=-1, top_k=30, max_mid_term_frames=4,
                         min_mid_term_frames=2, max_long_term_elements=1000, num_prototypes=8),
          "prompts": {0: {1: ("rect", 100, 200, 350, 420), 2: ("ellipse", 650, 300, 120, 160)},
                      2: {3: ("rect", 420, 60, 560, 200)}}},
}


def draw(shape: tuple, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    if shape[0] == "rect":
        x1, y1, x2, y2 = shape[1:]
        mask[y1:y2, x1:x2] = 1
    else:
        cx, cy, ax, ay = shape[1:]
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def prompt_labels(prompts: dict, height: int, width: int) -> np.ndarray:
    labels = np.zeros((height, width), np.uint8)
    for obj, shape in prompts.items():
        labels[draw(shape, height, width)] = obj
    return labels


def official_modules(checkout: Path):
    sys.path.insert(0, str(checkout))
    from model import resnet  # noqa: PLC0415 (the official package)

    r18, r50 = resnet.resnet18, resnet.resnet50
    resnet.resnet18 = lambda pretrained=True, extra_dim=0: r18(False, extra_dim)
    resnet.resnet50 = lambda pretrained=True, extra_dim=0: r50(False, extra_dim)
    from inference.inference_core import InferenceCore  # noqa: PLC0415
    from model.network import XMem  # noqa: PLC0415
    return XMem, InferenceCore


def run_scenario(name: str, spec: dict, network, InferenceCore, frames_dir: Path,
                 out: dict) -> None:
    from autotrack.vos.xmem.segmenter import (  # noqa: PLC0415
        preprocess_frame, processing_shape, resize_masks)

    config = dict(spec["budget"], enable_long_term=True, enable_long_term_count_usage=True,
                  hidden_dim=64, key_dim=64, value_dim=512)
    core = InferenceCore(network, config=config)
    digest = hashlib.sha256()
    probs, labels, trace = [], [], []
    known: list[int] = []
    for t, index in enumerate(spec["frames"]):
        image = cv2.imread(str(frames_dir / f"{index:05d}.jpg"))
        height, width = image.shape[:2]
        shape = processing_shape(height, width, SIZE)
        rgb = preprocess_frame(image, shape)
        digest.update(rgb.numpy().tobytes())
        mask = valid = None
        if t in spec["prompts"]:
            given = spec["prompts"][t]
            label_image = prompt_labels(given, height, width)
            out[f"{name}.prompt{t}"] = label_image
            known += [obj for obj in given if obj not in known]
            full = np.stack([label_image == obj for obj in known])
            mask = resize_masks(full, shape)
            valid = [known.index(obj) + 1 for obj in given]
            core.set_all_labels(list(range(1, len(known) + 1)))
        prob = core.step(rgb, mask, valid)
        probs.append(prob[:, ::STRIDE, ::STRIDE].numpy().astype(np.float32))
        full_prob = F.interpolate(prob.unsqueeze(1), (height, width), mode="bilinear",
                                  align_corners=False)[:, 0]
        labels.append(torch.max(full_prob, dim=0).indices.numpy().astype(np.uint8))
        memory = core.memory
        trace.append((memory.work_mem.size // memory.HW, memory.long_mem.size))
        print(name, t, index, tuple(prob.shape), trace[-1], flush=True)
    # probabilities of different frames have different object counts: pad with NaN
    rows = max(p.shape[0] for p in probs)
    padded = np.full((len(probs), rows, *probs[0].shape[1:]), np.nan, np.float32)
    for i, p in enumerate(probs):
        padded[i, :p.shape[0]] = p
    out[f"{name}.prob"] = padded
    out[f"{name}.labels"] = np.stack(labels)
    out[f"{name}.trace"] = np.asarray(trace, np.int64)
    out[f"{name}.input_sha256"] = np.asarray(digest.hexdigest())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("official", type=Path, help="a checkout of hkchengrex/XMem")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "tests/fixtures/xmem_parity.npz")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    XMem, InferenceCore = official_modules(args.official.resolve())
    from autotrack.vos.xmem.checkpoint import random_state_dict  # noqa: PLC0415

    network = XMem({"key_dim": 64, "value_dim": 512, "hidden_dim": 64}).eval()
    network.load_state_dict(random_state_dict(seed=SEED), strict=True)
    out: dict[str, np.ndarray] = {}
    for name, spec in SCENARIOS.items():
        run_scenario(name, spec, network, InferenceCore, args.data / "videos" / "bedroom", out)
    meta = {"size": SIZE, "stride": STRIDE, "seed": SEED,
            "scenarios": {name: {"frames": spec["frames"], "budget": spec["budget"],
                                 "prompt_frames": sorted(spec["prompts"])}
                          for name, spec in SCENARIOS.items()}}
    out["meta"] = np.asarray(json.dumps(meta))
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
