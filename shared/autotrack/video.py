"""Frames from a video file or a folder of images, with the facts exports need (size, fps)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotrack.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int  # as announced by the container; frame folders are exact
    width: int
    height: int
    fps: float


class FrameSource:
    """Iterates (index, HxWx3 uint8 BGR frame); a video or a sorted folder of images.

    ``info.frame_count`` of a video is what its container announces; a truncated or damaged
    file decodes fewer frames than that, and iteration simply stops at the first frame that
    cannot be decoded. ``declared_frames`` keeps the announced count (None where the container
    gives none) so that a caller can tell the user with :meth:`shortfall`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self._images = sorted(
                (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                key=_natural_key,
            )
            if not self._images:
                raise InputError(f"{self.path}: folder holds no images "
                                 f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            first = self._read_image(self._images[0])
            self.info = VideoInfo(len(self._images), first.shape[1], first.shape[0], DEFAULT_FPS)
            self.declared_frames: int | None = len(self._images)
        else:
            self._images = None
            capture = cv2.VideoCapture(str(self.path))
            try:
                ok, first = capture.read() if capture.isOpened() else (False, None)
                if not ok or first is None:
                    raise InputError(f"{self.path}: not a readable video (or it has no frames)")
                fps = capture.get(cv2.CAP_PROP_FPS)
                count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            finally:
                capture.release()
            fps = fps if np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
            self.info = VideoInfo(max(count, 1), first.shape[1], first.shape[0], fps)
            self.declared_frames = count if count > 0 else None

    def shortfall(self, frames_read: int) -> str | None:
        """A warning line when a whole pass read fewer frames than the header announced
        (a truncated or damaged video: OpenCV stops at the first frame it cannot decode);
        None when the source was read in full or announces no count."""
        declared = self.declared_frames
        if declared is None or frames_read >= declared:
            return None
        covered = f"frames 0-{frames_read - 1}" if frames_read else "no frames"
        return (f"warning: {self.path.name}: the header says {declared} frames but only "
                f"{frames_read} could be decoded; the output covers {covered}")

    @staticmethod
    def _read_image(path: Path) -> np.ndarray:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise InputError(f"{path}: not a readable image")
        return frame

    def frames_at(self, indices: Iterable[int], *, strict: bool = False
                  ) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for the given indices only, in increasing order (a video is
        read once up to the last of them, the frames between grabbed, not decoded to BGR).
        Indices past the end (or past a frame that cannot be decoded) are left out, or with
        ``strict`` are an InputError naming the first of them."""
        wanted = sorted({int(i) for i in indices if int(i) >= 0})
        if not wanted:
            return
        if self._images is not None:
            for index in wanted:
                if index < len(self._images):
                    yield index, self._image_frame(index)
                elif strict:
                    raise InputError(f"{self.path}: frame {index} is not there (the folder "
                                     f"holds {len(self._images)} frames)")
            return
        decoded = yield from self._video_frames(set(wanted))
        if strict and wanted[-1] >= decoded:
            missing = next(i for i in wanted if i >= decoded)
            raise InputError(f"{self.path}: frame {missing} cannot be decoded (the video ends "
                             f"after {decoded} frames)")

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._images is not None:
            for index in range(len(self._images)):
                yield index, self._image_frame(index)
            return
        yield from self._video_frames(None)

    def sampled(self, every: int) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(index, frame)`` for every frame, the frame decoded only on every ``every``-th
        index (0, every, 2 every, ...) and None between: a video grabs those without
        decoding them to BGR, a folder does not read them."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if self._images is not None:
            for index in range(len(self._images)):
                yield index, self._image_frame(index) if index % every == 0 else None
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                if index % every == 0:
                    ok, frame = capture.read()
                else:
                    ok, frame = capture.grab(), None
                if not ok:
                    return
                yield index, frame
                index += 1
        finally:
            capture.release()

    def _image_frame(self, index: int) -> np.ndarray:
        image = self._images[index]  # type: ignore[index]
        frame = self._read_image(image)
        if frame.shape[:2] != (self.info.height, self.info.width):
            raise InputError(
                f"{image}: size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                f"image's {self.info.width}x{self.info.height}")
        return frame

    def _video_frames(self, wanted: set[int] | None
                      ) -> Generator[tuple[int, np.ndarray], None, int]:
        """The video's frames in order: every one (``wanted`` None) or those in ``wanted``
        (the others grabbed past); stops at the first that cannot be decoded. Returns the
        number of frames passed (read or grabbed)."""
        last = None if wanted is None else max(wanted)
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while last is None or index <= last:
                if wanted is None or index in wanted:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    yield index, frame
                elif not capture.grab():
                    break
                index += 1
        finally:
            capture.release()
        return index


def _natural_key(path: Path) -> tuple:
    """frame_2 before frame_10: digits compare as numbers."""
    parts = []
    for chunk in _split_digits(path.stem):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return (tuple(parts), path.suffix)


def _split_digits(text: str) -> list[str]:
    chunks: list[str] = []
    for char in text:
        if chunks and chunks[-1][-1].isdigit() == char.isdigit():
            chunks[-1] += char
        else:
            chunks.append(char)
    return chunks
