"""Deterministic synthetic detection streams for tests and benchmarks.

Objects move with constant velocity plus jitter inside a frame; the detector is imitated
with box noise, missed detections, occlusion-like low scores and false positives, so every
branch of a two-stage tracker (high, low, unconfirmed, lost, re-found) is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotrack.detections import Detections


@dataclass(frozen=True)
class SceneConfig:
    objects: int = 20
    frames: int = 300
    width: float = 1920.0
    height: float = 1080.0
    box_noise: float = 0.04  # std of each coordinate, as a fraction of the box size
    miss_rate: float = 0.05
    low_score_rate: float = 0.15  # detections scored 0.1-0.5, as occluded objects are
    false_positives: float = 1.0  # mean per frame
    seed: int = 0


@dataclass(frozen=True)
class Scene:
    detections: list[Detections]
    truth_ids: list[np.ndarray]  # per frame, the true object of each detection (-1: false positive)
    true_boxes: list[np.ndarray]  # per frame, every object's noise-free box (row i: object i)


def make_scene(config: SceneConfig) -> Scene:
    rng = np.random.default_rng(config.seed)
    n = config.objects
    # Object sizes scale so the scene is crowded but not degenerate at 200 objects.
    scale = np.sqrt(config.width * config.height / max(n, 1)) / 4
    size = rng.uniform(0.5, 1.0, (n, 2)) * scale * np.array([0.6, 1.4])
    position = rng.uniform([0, 0], [config.width, config.height], (n, 2))
    velocity = rng.normal(0, scale / 40, (n, 2))
    detections, truth, true_boxes = [], [], []
    for _ in range(config.frames):
        velocity += rng.normal(0, scale / 400, (n, 2))
        position += velocity
        # Bounce off the frame edges so objects stay in view.
        for axis, limit in ((0, config.width), (1, config.height)):
            out = (position[:, axis] < 0) | (position[:, axis] > limit)
            velocity[out, axis] *= -1
            position[:, axis] = position[:, axis].clip(0, limit)
        boxes = np.concatenate([position - size / 2, position + size / 2], axis=1)
        true_boxes.append(boxes.copy())
        boxes += rng.normal(0, 1, boxes.shape) * config.box_noise * np.tile(size, 2)
        scores = rng.uniform(0.55, 0.95, n)
        low = rng.random(n) < config.low_score_rate
        scores[low] = rng.uniform(0.12, 0.5, low.sum())
        seen = rng.random(n) >= config.miss_rate
        ids = np.flatnonzero(seen)
        fp_count = rng.poisson(config.false_positives)
        fp_centre = rng.uniform([0, 0], [config.width, config.height], (fp_count, 2))
        fp_size = rng.uniform(0.3, 1.0, (fp_count, 2)) * scale
        fp_boxes = np.concatenate([fp_centre - fp_size / 2, fp_centre + fp_size / 2], axis=1)
        fp_scores = rng.uniform(0.1, 0.6, fp_count)
        order = rng.permutation(len(ids) + fp_count)
        all_boxes = np.concatenate([boxes[ids], fp_boxes])[order]
        all_scores = np.concatenate([scores[ids], fp_scores])[order]
        all_truth = np.concatenate([ids, np.full(fp_count, -1)])[order]
        detections.append(Detections(all_boxes, all_scores, np.zeros(len(order), dtype=np.int64)))
        truth.append(all_truth)
    return Scene(detections=detections, truth_ids=truth, true_boxes=true_boxes)
