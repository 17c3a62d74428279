"""The camera's own motion between consecutive frames, estimated from the images.

A camera that pans moves every object in the image at once. An online tracker that predicts
boxes from their own past motion then looks in the wrong place, worst for objects it has
lost for a while. Box-only estimates fail where a crowd walks one way (it looks like a pan
the other way), so the shift comes from the pixels: the frames are shrunk by a whole factor
to at most ``width`` pixels across, turned grey, the detected objects' boxes blanked out
(filled with the frame's mean, so moving people do not vote), and the translation found by
phase correlation (``cv2.phaseCorrelate`` with a Hanning window). A weak correlation peak
(``min_response``: a cut, a flat or blurred frame) counts as no motion. A camera that has
not moved for ``still_after`` estimates in a row (under ``still_px`` each) is then checked on
every ``still_every``-th frame only, against the last frame checked, until it moves again:
a still camera (most surveillance footage) costs a quarter, a moving one the full estimate.
Shifts under ``still_px`` are held back and summed until they reach it, so that a still
camera's noise (hundredths of a pixel) reaches the tracker as exactly no motion and changes
no track, while a slow pan still arrives whole.

The result feeds :meth:`autotrack.trackers.bytetrack.ByteTrack.update` (``camera_shift``),
which moves every track's prediction by it before association, as BoT-SORT's global motion
compensation does (translation only here: the pans and sways of handheld and PTZ cameras).
The offline steps after tracking (refinement's links and fills, smoothing) assume smooth
motion, which a swaying camera breaks, so they run on the tracks with the camera's path
taken out (:class:`CameraPath`) and the path is put back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from autotrack.tracks import Track


@dataclass(frozen=True)
class CameraMotionConfig:
    width: int = 320  # the shrunk frame is at most this wide (shrunk by a whole factor)
    mask_detections: bool = True  # blank the detected objects' boxes out of both frames
    min_response: float = 0.05  # phase-correlation peak below this: no usable shift (0, 0)
    tiles: int = 3  # a tiles x tiles grid votes (median); 1: one estimate over the frame
    # after this many estimates in a row under still_px, estimate on every still_every-th
    # frame only (against the last one estimated) until one is over still_px; 0: every frame.
    # Shifts are handed on once they add up to still_px (0: as estimated).
    still_after: int = 10
    still_px: float = 0.25
    still_every: int = 4

    def __post_init__(self) -> None:
        if self.tiles < 1:
            raise ValueError(f"tiles must be at least 1, got {self.tiles}")
        if self.still_after < 0 or self.still_every < 1 or self.still_px < 0:
            raise ValueError("still_after and still_px must not be negative, still_every "
                             f"must be at least 1: got {self.still_after}, {self.still_px}, "
                             f"{self.still_every}")
        if self.width < 32:
            raise ValueError(f"width must be at least 32 pixels, got {self.width}")
        if not 0.0 <= self.min_response < 1.0:
            raise ValueError(f"min_response must lie in [0, 1), got {self.min_response}")


@dataclass(frozen=True)
class CameraPath:
    """How far the camera's motion has moved the scene by each frame: ``offsets[i]`` (dx, dy)
    at ``frames[i]``, summed from the first frame; linear in between, flat outside."""

    frames: np.ndarray  # (K,) increasing frame indices
    offsets: np.ndarray  # (K, 2)

    def at(self, frames: np.ndarray) -> np.ndarray:
        """(N, 2) offsets at ``frames``."""
        if not len(self.frames):
            return np.zeros((len(frames), 2))
        return np.stack([np.interp(frames, self.frames, self.offsets[:, k]) for k in (0, 1)],
                        axis=1)

    def still(self, track: Track) -> Track:
        """The track as a still camera would have seen it (the camera's motion taken out)."""
        return self._moved(track, -1.0)

    def moving(self, track: Track) -> Track:
        """The inverse of :meth:`still`: the camera's motion put back."""
        return self._moved(track, 1.0)

    def _moved(self, track: Track, sign: float) -> Track:
        offset = np.tile(self.at(track.frames), 2) * sign
        return replace(track, boxes=np.asarray(track.boxes, dtype=np.float64) + offset)


class CameraMotion:
    """Call :meth:`shift` once per frame, in order: the image content's displacement (dx, dy)
    in pixels since the previous frame given (a still point at p is now at p + shift)."""

    def __init__(self, config: CameraMotionConfig | None = None) -> None:
        self.config = config or CameraMotionConfig()
        self._previous_boxes = np.zeros((0, 4))
        self._previous_small: np.ndarray | None = None  # the previous frame, shrunk, grey
        self._window: np.ndarray | None = None
        self._factor = 1
        self._travelled = np.zeros(2)
        self._path: tuple[list[int], list[np.ndarray]] = ([], [])
        self._still = 0  # estimates in a row under still_px
        self._skipped = 0  # frames not estimated since the last one (camera still)
        self._held = np.zeros(2)  # estimated motion under still_px, not handed on yet

    def path(self) -> CameraPath:
        """The camera's path over the frames given with an ``index`` so far."""
        frames, offsets = self._path
        return CameraPath(np.asarray(frames, dtype=np.int64),
                          np.asarray(offsets, dtype=np.float64).reshape(-1, 2))

    def shift(self, frame: np.ndarray, boxes: np.ndarray | None = None,
              index: int | None = None) -> np.ndarray:
        """(2,) float: how far the scene moved since the previous frame; (0, 0) for the first
        frame, a frame of another size, or a weak correlation. ``boxes`` (N, 4) xyxy in the
        frame's pixels: objects that move on their own, left out of the estimate. ``index``:
        the frame's number, to record the camera's :meth:`path`. While the camera is still
        (see ``CameraMotionConfig.still_after``) most frames are not looked at: (0, 0), and
        the next frame estimated gives the shift since the last one estimated."""
        config = self.config
        if (config.still_after and self._still >= config.still_after
                and self._skipped < config.still_every - 1):
            self._skipped += 1
            return self._moved(np.zeros(2), index)
        self._skipped = 0
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        factor = max(1, -(-grey.shape[1] // self.config.width))  # ceil
        height, width = grey.shape[0] // factor, grey.shape[1] // factor
        small = cv2.resize(grey[: height * factor, : width * factor], (width, height),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
        previous = self._previous_small
        moved = np.zeros(2)
        if previous is not None and previous.shape == small.shape and factor == self._factor:
            mask = self._mask(small.shape, np.concatenate([boxes, self._previous_boxes]),
                              factor) if self.config.mask_detections else None
            found = self._correlate(_blank(previous, mask), _blank(small, mask), mask)
            if found is not None:
                moved = found * factor
                self._still = self._still + 1 if np.hypot(*moved) < config.still_px else 0
        else:
            self._still = 0  # the first frame, or another size: nothing known yet
        self._previous_small, self._previous_boxes, self._factor = small, boxes, factor
        return self._moved(moved, index)

    def _moved(self, moved: np.ndarray, index: int | None) -> np.ndarray:
        self._held = self._held + moved
        if np.hypot(*self._held) >= self.config.still_px:
            moved, self._held = self._held, np.zeros(2)
        else:
            moved = np.zeros(2)
        self._travelled = self._travelled + moved
        if index is not None:
            self._path[0].append(index)
            self._path[1].append(self._travelled)
        return moved

    def _correlate(self, before: np.ndarray, after: np.ndarray, keep: np.ndarray | None
                   ) -> np.ndarray | None:
        """The shift between two shrunk frames: phase correlation of the whole frame, or with
        ``tiles`` > 1 the median over a grid of tiles (each mostly unmasked and with a clear
        peak), so that a group walking together, missed by the detector, is outvoted."""
        rows = cols = self.config.tiles
        if rows == 1:
            if self._window is None or self._window.shape != before.shape:
                self._window = cv2.createHanningWindow(before.shape[::-1], cv2.CV_32F)
            (dx, dy), response = cv2.phaseCorrelate(before, after, self._window)
            ok = response >= self.config.min_response and np.isfinite([dx, dy]).all()
            return np.array([dx, dy]) if ok else None
        height, width = before.shape[0] // rows, before.shape[1] // cols
        if self._window is None or self._window.shape != (height, width):
            self._window = cv2.createHanningWindow((width, height), cv2.CV_32F)
        votes = []
        for r in range(rows):
            for c in range(cols):
                cell = (slice(r * height, (r + 1) * height), slice(c * width, (c + 1) * width))
                if keep is not None and keep[cell].mean() < 0.5:
                    continue
                (dx, dy), response = cv2.phaseCorrelate(np.ascontiguousarray(before[cell]),
                                                        np.ascontiguousarray(after[cell]),
                                                        self._window)
                if response >= self.config.min_response and np.isfinite([dx, dy]).all():
                    votes.append((dx, dy))
        return np.median(np.array(votes), axis=0) if votes else None

    @staticmethod
    def _mask(shape: tuple[int, ...], boxes: np.ndarray, factor: int) -> np.ndarray | None:
        """True where no box (of either frame) covers the shrunk frame; None: no boxes."""
        if not len(boxes):
            return None
        keep = np.ones(shape, dtype=bool)
        cells = np.round(boxes / factor).astype(np.int64)
        cells[:, [0, 2]] = cells[:, [0, 2]].clip(0, shape[1])
        cells[:, [1, 3]] = cells[:, [1, 3]].clip(0, shape[0])
        for x1, y1, x2, y2 in cells.tolist():
            keep[y1:y2, x1:x2] = False
        return keep


def _blank(small: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """The frame with the masked-out pixels set to the mean of the rest (no edge there)."""
    if keep is None or not keep.any():
        return small
    out = small.copy()
    out[~keep] = small[keep].mean()
    return out
