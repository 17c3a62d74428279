"""Live video segmenters shared by CVAT tracker requests: objects started on one frame and
followed frame by frame, each carried by a :class:`~autotrack.vos.mask_state.MaskTrackState`
that can start it again when its live segmenter is gone (another worker, an expired session).

Both CVAT doors use it: the Nuclio mask tracker keeps one :class:`~autotrack.sot.SessionStore`
per worker, the cvat-sdk tracking functions one per shape in the agent's tracking state.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autotrack.sot.session import Session, SessionStore
from autotrack.vos.base import ObjectPrompt, VideoSegmenter
from autotrack.vos.factory import SegmenterFactory
from autotrack.vos.mask_state import MaskTrackState, ShapePrompt


@dataclass
class LiveGroup:
    """One live segmenter and the last mask (digest) it gave each of its objects."""

    segmenter: VideoSegmenter
    objects: dict[int, str]


class MaskTracker:
    """Starts objects on a frame and follows them, using a live segmenter where one is left
    at the states' step and starting the objects again from their states where not.

    Segmenters come from ``factory`` (called under a lock, so concurrent requests never get
    one segmenter, i.e. one memory, between them); a stale session's segmenter is dropped.
    Live segmenters are kept in ``store``, or in the ``store`` a call names (the cvat-sdk
    door gives each shape its own, kept in the agent's tracking state).
    """

    def __init__(self, kind: str, factory: SegmenterFactory, store: SessionStore) -> None:
        self.kind = kind
        self.factory = factory
        self.store = store
        self.reinits = 0  # groups started again from their states
        self._lock = threading.Lock()

    def start(self, image: np.ndarray, prompts: Sequence[ShapePrompt], *,
              store: SessionStore | None = None) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Start every prompt as an object of one new session on ``image``."""
        store = self.store if store is None else store
        session = SessionStore.new_id()
        segmenter = self._segmenter()
        objects = [self._object_prompt(k + 1, p.box, p.mask)
                   for k, p in enumerate(prompts)]
        masks = segmenter.step(image, objects)
        out = []
        for k, prompt in enumerate(prompts):
            mask = _mask_of(masks, k + 1, image)
            out.append((mask, MaskTrackState.start(self.kind, image, prompt, mask,
                                                   session=session, object_id=k + 1)))
        self._keep(store, session, segmenter, [state for _, state in out])
        return out

    def follow(self, image: np.ndarray, states: Sequence[MaskTrackState], *,
               store: SessionStore | None = None) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Every state one frame on (``image``); the order of ``states`` is kept."""
        store = self.store if store is None else store
        out: list[tuple[np.ndarray, MaskTrackState] | None] = [None] * len(states)
        groups: dict[str, list[int]] = {}
        for index, state in enumerate(states):
            groups.setdefault(state.session, []).append(index)
        for session, indices in groups.items():
            group = [states[i] for i in indices]
            live = store.take(session)
            if live is not None and _matches(live, group):
                results = self._step_live(store, live.tracker, session, image, group)
            else:  # a stale live segmenter (if any) is dropped with ``live``
                results = self._restart(store, image, group)
            for index, result in zip(indices, results):
                out[index] = result
        return out  # type: ignore[return-value]

    def _step_live(self, store: SessionStore, live: LiveGroup, session: str, image: np.ndarray,
                   group: list[MaskTrackState]) -> list[tuple[np.ndarray, MaskTrackState]]:
        wanted = {state.object_id for state in group}
        for object_id in set(live.objects) - wanted:  # no longer followed: free its memory
            live.segmenter.forget(object_id)
        masks = live.segmenter.step(image)
        results = [(mask := _mask_of(masks, s.object_id, image),
                    s.advanced(mask, session=session)) for s in group]
        self._keep(store, session, live.segmenter, [state for _, state in results])
        return results

    def _restart(self, store: SessionStore, image: np.ndarray,
                 group: list[MaskTrackState]) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Objects started again on their stored start frame, then stepped to ``image``; one
        new session per start frame (a session's objects normally share one)."""
        by_prompt: dict[str, list[int]] = {}
        for k, state in enumerate(group):
            by_prompt.setdefault(state.prompt_digest, []).append(k)
        results: list = [None] * len(group)
        for indices in by_prompt.values():
            members = [group[k] for k in indices]
            session = SessionStore.new_id()
            segmenter = self._segmenter()
            prompts = [self._object_prompt(s.object_id, *s.restart_prompt()) for s in members]
            segmenter.step(members[0].prompt_frame(), prompts)
            masks = segmenter.step(image)
            self.reinits += 1
            for k, state in zip(indices, members):
                mask = _mask_of(masks, state.object_id, image)
                results[k] = (mask, state.advanced(mask, session=session))
            self._keep(store, session, segmenter, [results[k][1] for k in indices])
        return results

    @staticmethod
    def _object_prompt(object_id: int, box, mask) -> ObjectPrompt:
        if mask is not None:
            return ObjectPrompt(object_id, mask=mask)
        return ObjectPrompt(object_id, box=box)

    @staticmethod
    def _keep(store: SessionStore, session: str, segmenter: VideoSegmenter,
              states: Sequence[MaskTrackState]) -> None:
        live = LiveGroup(segmenter, {s.object_id: s.last_digest for s in states})
        store.put(session, Session(tracker=live, step=states[0].step,
                                   box=(0.0, 0.0, 0.0, 0.0), last_used=0.0))

    def _segmenter(self) -> VideoSegmenter:
        with self._lock:  # a factory is not thread-safe (see _FirstThenBuild)
            return self.factory()


def _matches(live: Session, group: list[MaskTrackState]) -> bool:
    objects = live.tracker.objects
    return all(s.step == live.step and objects.get(s.object_id) == s.last_digest for s in group)


def _mask_of(masks: Mapping[int, np.ndarray], object_id: int, image: np.ndarray) -> np.ndarray:
    mask = masks.get(object_id)
    if mask is None:
        return np.zeros(image.shape[:2], bool)
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise RuntimeError(f"the segmenter gave object {object_id} a {mask.shape} mask on a "
                           f"{image.shape[:2]} frame")
    return mask.astype(bool, copy=False)


__all__ = ["LiveGroup", "MaskTracker"]
