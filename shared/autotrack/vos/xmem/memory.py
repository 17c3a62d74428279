"""XMem's three memories (Atkinson-Shiffrin): sensory, working and long-term, with consolidation.

- **Sensory memory**: one hidden state per object at stride 16, updated every frame by the
  decoder's GRU and "deep-updated" by the value encoder on memory frames (held here as
  :attr:`XMemMemory.hidden`).
- **Working memory**: the key/value features of recent memory frames (every ``mem_every``-th
  frame and every prompted frame), read with a top-k softmax over an L2 similarity scaled by
  the memory's shrinkage and the query's selection. Every read adds each element's share of
  the affinity to its *usage*.
- **Long-term memory**: when the working memory reaches ``max_mid_term_frames``, all but its
  first frame and the newest ``min_mid_term_frames - 1`` frames are consolidated into
  ``num_prototypes`` prototypes: the most used keys, each with a value read out from the
  candidates it resembles (potentiation). When the long-term memory would pass
  ``max_long_term_elements``, its least used elements (usage / age) are dropped first.

So the memory is bounded over any video length: at most ``max_mid_term_frames`` frames of
working memory and ``max_long_term_elements`` long-term elements, whatever the video length.

This follows the official ``inference/memory_manager.py`` and ``kv_memory_store.py`` step for
step (including how values of objects added later pair with the newest keys: a value group
always covers the *last* ``n`` keys). Two generalisations, both equal to the official code
where the official code runs: usage is always counted in the long-term memory (the official
evaluation turns it on only for videos long enough to need it; a stream has no known length,
and the official interactive demo also always counts), and obsolete long-term elements are
removed per object group too (the official code raises ``NotImplementedError`` there).
Objects can be removed (:meth:`XMemMemory.forget`), which the official code cannot do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MemoryBudget:
    """XMem's memory settings; the defaults are the official evaluation defaults."""

    mem_every: int = 5  # r: a memory frame every r frames (prompted frames always)
    deep_update_every: int = -1  # -1: deep-update the sensory memory on memory frames
    top_k: int = 30
    max_mid_term_frames: int = 10  # T_max
    min_mid_term_frames: int = 5  # T_min
    max_long_term_elements: int = 10000  # LT_max
    num_prototypes: int = 128  # P

    def __post_init__(self) -> None:
        for name in ("mem_every", "top_k", "max_mid_term_frames", "min_mid_term_frames",
                     "max_long_term_elements", "num_prototypes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"XMem {name} must be a positive int, got {value!r}")
        if not isinstance(self.deep_update_every, int) or self.deep_update_every == 0:
            raise ValueError("XMem deep_update_every must be a non-zero int (-1: with memory "
                             f"frames), got {self.deep_update_every!r}")
        if not self.min_mid_term_frames < self.max_mid_term_frames:
            raise ValueError("XMem needs min_mid_term_frames < max_mid_term_frames, got "
                             f"{self.min_mid_term_frames} and {self.max_mid_term_frames}")
        if not self.num_prototypes < self.max_long_term_elements:
            raise ValueError("XMem needs num_prototypes < max_long_term_elements, got "
                             f"{self.num_prototypes} and {self.max_long_term_elements}")


# -- similarity and top-k softmax (official model/memory_util.py) ---------------------------

def similarity(mk: torch.Tensor, ms: torch.Tensor | None, qk: torch.Tensor,
               qe: torch.Tensor | None) -> torch.Tensor:
    """Negative L2 distance, selection-weighted, times shrinkage / sqrt(CK): (B, N, HW)."""
    ck = mk.shape[1]
    mk, qk = mk.flatten(2), qk.flatten(2)
    ms = ms.flatten(1).unsqueeze(2) if ms is not None else None
    qe = qe.flatten(2) if qe is not None else None
    if qe is not None:
        mk = mk.transpose(1, 2)
        a_sq = mk.pow(2) @ qe
        two_ab = 2 * (mk @ (qk * qe))
        b_sq = (qe * qk.pow(2)).sum(1, keepdim=True)
        sim = -a_sq + two_ab - b_sq
    else:
        sim = -mk.pow(2).sum(1).unsqueeze(2) + 2 * (mk.transpose(1, 2) @ qk)
    return sim * ms / math.sqrt(ck) if ms is not None else sim / math.sqrt(ck)


def softmax_affinity(sim: torch.Tensor, top_k: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over memory elements (dim 1), only over the top k when given; and the usage
    (each element's summed affinity over the query pixels)."""
    if top_k is not None:
        values, indices = torch.topk(sim, k=min(top_k, sim.shape[1]), dim=1)
        x_exp = values.exp()
        x_exp = x_exp / x_exp.sum(1, keepdim=True)
        affinity = torch.zeros_like(sim).scatter_(1, indices, x_exp)
    else:
        x_exp = torch.exp(sim - sim.max(1, keepdim=True)[0])
        affinity = x_exp / x_exp.sum(1, keepdim=True)
    return affinity, affinity.sum(2)


def _cut(x: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """x without [start:end) along the last axis (end <= 0 counts from the end)."""
    return x[..., :start] if end == 0 else torch.cat([x[..., :start], x[..., end:]], -1)


def _tail(x: torch.Tensor, n: int, dim: int = -1) -> torch.Tensor:
    """The last n entries along ``dim`` (n = 0 gives none; x[-0:] would give all)."""
    return x.narrow(dim, x.shape[dim] - n, n)


def _slice(x: torch.Tensor, start: int, end: int) -> torch.Tensor:
    return x[..., start:] if end == 0 else x[..., start:end]


class KeyValueStore:
    """Keys (1, CK, N) shared by all objects; values per object group (n_g, CV, N_g), where a
    group is the objects that started on the same frame and covers the last N_g keys."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.k: torch.Tensor | None = None
        self.s: torch.Tensor | None = None  # shrinkage (1, 1, N)
        self.e: torch.Tensor | None = None  # selection (1, CK, N), working memory only
        self.v: list[torch.Tensor] = []
        self.use_count: torch.Tensor | None = None
        self.life_count: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return 0 if self.k is None else self.k.shape[-1]

    @property
    def num_groups(self) -> int:
        return len(self.v)

    def group_sizes(self) -> list[int]:
        return [v.shape[0] for v in self.v]

    def nbytes(self) -> int:
        tensors = [self.k, self.s, self.e, self.use_count, self.life_count, *self.v]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def add(self, key: torch.Tensor, shrinkage: torch.Tensor | None,
            selection: torch.Tensor | None, values: list[torch.Tensor | None]) -> None:
        """Append N keys; ``values[g]`` extends group g (None: no value) or starts it."""
        count = torch.zeros((key.shape[0], 1, key.shape[2]), device=key.device)
        life = count + 1e-7
        if self.k is None:
            self.k, self.s, self.e = key, shrinkage, selection
            self.use_count, self.life_count = count, life
        else:
            self.k = torch.cat([self.k, key], -1)
            if shrinkage is not None:
                self.s = torch.cat([self.s, shrinkage], -1)
            if selection is not None:
                self.e = torch.cat([self.e, selection], -1)
            self.use_count = torch.cat([self.use_count, count], -1)
            self.life_count = torch.cat([self.life_count, life], -1)
        for gi, gv in enumerate(values):
            if gv is None:
                continue
            if gi < self.num_groups:
                self.v[gi] = torch.cat([self.v[gi], gv], -1)
            else:
                self.v.append(gv)

    def update_usage(self, usage: torch.Tensor) -> None:
        self.use_count += usage.view_as(self.use_count)
        self.life_count += 1

    def usage(self) -> torch.Tensor:
        return self.use_count / self.life_count

    def sieve(self, start: int, end: int, min_size: int) -> None:
        """Drop [start:end) from keys and from every value group of at least min_size."""
        self.k = _cut(self.k, start, end)
        self.use_count = _cut(self.use_count, start, end)
        self.life_count = _cut(self.life_count, start, end)
        self.s = _cut(self.s, start, end) if self.s is not None else None
        self.e = _cut(self.e, start, end) if self.e is not None else None
        self.v = [_cut(gv, start, end) if gv.shape[-1] >= min_size else gv for gv in self.v]

    def sliced(self, start: int, end: int):
        """Keys, shrinkage, selection, usage of [start:end)."""
        return (_slice(self.k, start, end),
                _slice(self.s, start, end) if self.s is not None else None,
                _slice(self.e, start, end) if self.e is not None else None,
                _slice(self.usage(), start, end))

    def remove_obsolete(self, max_size: int) -> None:
        """Keep at most ``max_size`` elements: drop the least used (ties at the cut go too)."""
        if self.size <= max_size:
            return  # the official code would ask topk for 0 elements and fail
        usage = self.usage().flatten()
        lowest, _ = torch.topk(usage, k=self.size - max_size, largest=False, sorted=True)
        keep = usage > lowest[-1]
        self.k = self.k[:, :, keep]
        self.s = self.s[:, :, keep] if self.s is not None else None
        self.e = self.e[:, :, keep] if self.e is not None else None
        # a group's values pair with the last N_g keys
        self.v = [gv[:, :, _tail(keep, gv.shape[-1])] for gv in self.v]
        self.use_count = self.use_count[:, :, keep]
        self.life_count = self.life_count[:, :, keep]

    def remove_object(self, group: int, index: int) -> None:
        """Drop one object's values. When its group empties and it was the first group, the
        keys only it covered go too, so the first group covers every key again (the readout
        and consolidation rely on it); with no group left the store is empty."""
        gv = self.v[group]
        if gv.shape[0] > 1:
            self.v[group] = torch.cat([gv[:index], gv[index + 1:]], 0)
            return
        del self.v[group]
        if not self.v:
            self.clear()
        elif group == 0:
            keep = self.v[0].shape[-1]
            self.k, self.use_count, self.life_count = (
                _tail(x, keep) for x in (self.k, self.use_count, self.life_count))
            self.s = _tail(self.s, keep) if self.s is not None else None
            self.e = _tail(self.e, keep) if self.e is not None else None


class XMemMemory:
    """Sensory + working + long-term memory for one video (official ``MemoryManager``)."""

    def __init__(self, budget: MemoryBudget, hidden_dim: int) -> None:
        self.budget = budget
        self.hidden_dim = hidden_dim
        self.work = KeyValueStore()
        self.long = KeyValueStore()
        self.hidden: torch.Tensor | None = None  # (1, num_objects, CH, h, w)
        self.hw = 0  # key elements per frame, set by the first memory frame

    # -- reading ---------------------------------------------------------------------------
    def match(self, query_key: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
        """Readout for every object: (num_objects, CV, h, w)."""
        top_k = self.budget.top_k
        h, w = query_key.shape[-2:]
        query_key, selection = query_key.flatten(2), selection.flatten(2)
        work, long = self.work, self.long
        groups = work.num_groups
        if long.size:
            long_size = long.size
            sim = similarity(torch.cat([long.k, work.k], -1), torch.cat([long.s, work.s], -1),
                             query_key, selection)
            work_sim, long_sim = sim[:, long_size:], sim[:, :long_size]
            # usage from the first group, which has a value for every key
            first, usage = softmax_affinity(
                torch.cat([_tail(long_sim, long.v[0].shape[-1], 1), work_sim], 1), top_k)
            affinity = [first]
            for gi in range(1, groups):
                if gi < long.num_groups:
                    part = torch.cat([_tail(long_sim, long.v[gi].shape[-1], 1),
                                      _tail(work_sim, work.v[gi].shape[-1], 1)], 1)
                else:
                    part = _tail(work_sim, work.v[gi].shape[-1], 1)
                affinity.append(softmax_affinity(part, top_k)[0])
            values = [torch.cat([long.v[gi], gv], -1) if gi < long.num_groups else gv
                      for gi, gv in enumerate(work.v)]
            work.update_usage(usage[:, long_size:].flatten())
            long.update_usage(usage[:, :long_size].flatten())
        else:
            sim = similarity(work.k, work.s, query_key, selection)
            first, usage = softmax_affinity(sim, top_k)
            work.update_usage(usage.flatten())
            affinity = [first] + [softmax_affinity(_tail(sim, work.v[gi].shape[-1], 1), top_k)[0]
                                  for gi in range(1, groups)]
            values = work.v
        readout = torch.cat([gv @ affinity[gi] for gi, gv in enumerate(values)], 0)
        return readout.view(readout.shape[0], -1, h, w)

    # -- writing ---------------------------------------------------------------------------
    def add(self, key: torch.Tensor, shrinkage: torch.Tensor, value: torch.Tensor,
            selection: torch.Tensor) -> None:
        """One memory frame: key (1, CK, h, w), value (1, num_objects, CV, h, w). Objects not
        yet in any group start a new group."""
        self.hw = key.shape[-2] * key.shape[-1]
        value = value[0].flatten(2)
        values: list[torch.Tensor | None] = []
        start = 0
        for size in self.work.group_sizes():
            values.append(value[start:start + size])
            start += size
        if start < value.shape[0]:
            values.append(value[start:])
        self.work.add(key.flatten(2), shrinkage.flatten(2), selection.flatten(2), values)
        b = self.budget
        if self.work.size >= b.max_mid_term_frames * self.hw:
            if self.long.size >= b.max_long_term_elements - b.num_prototypes:
                self.long.remove_obsolete(b.max_long_term_elements - b.num_prototypes)
            self._compress()

    def _compress(self) -> None:
        hw, min_work = self.hw, self.budget.min_mid_term_frames * self.hw
        start, end = hw, -min_work + hw
        total = self.work.size
        candidates: list[torch.Tensor | None] = []
        for gv in self.work.v:
            n = gv.shape[-1]
            # a group that started late may be too short to give anything to the long term
            candidates.append(_slice(gv, start, end) if n == total or n > min_work + hw
                              else None)
        key, shrinkage, selection, usage = self.work.sliced(start, end)
        proto_key, proto_value, proto_shrinkage = self._consolidate(
            key, shrinkage, selection, usage, candidates)
        self.work.sieve(start, end, min_size=min_work + hw)
        self.long.add(proto_key, proto_shrinkage, None, proto_value)

    def _consolidate(self, key: torch.Tensor, shrinkage: torch.Tensor, selection: torch.Tensor,
                     usage: torch.Tensor, candidates: list[torch.Tensor | None]):
        """Prototypes = the most used candidate keys; their values and shrinkage are read out
        from the candidates with the prototype as query (potentiation)."""
        n = key.shape[-1]
        k = min(self.budget.num_prototypes, n)
        index = torch.topk(usage, k=k, dim=-1, sorted=True)[1].flatten()
        valid = [index >= (n - gv.shape[-1]) if gv is not None else None for gv in candidates]
        proto_key = key[:, :, index]
        proto_selection = selection[:, :, index] if selection is not None else None
        sim = similarity(key, shrinkage, proto_key, proto_selection)
        affinity = []
        for gi, gv in enumerate(candidates):
            aff = (softmax_affinity(_tail(sim, gv.shape[-1], 1)[:, :, valid[gi]])[0]
                   if gv is not None else None)
            affinity.append(aff if aff is not None and aff.shape[-1] > 0 else None)
        proto_value = [gv @ affinity[gi] if affinity[gi] is not None else None
                       for gi, gv in enumerate(candidates)]
        proto_shrinkage = shrinkage @ affinity[0] if shrinkage is not None else None
        return proto_key, proto_value, proto_shrinkage

    # -- sensory memory --------------------------------------------------------------------
    def ensure_hidden(self, num_objects: int, key: torch.Tensor) -> None:
        """Zero hidden states for objects that have none yet."""
        h, w = key.shape[-2:]
        have = 0 if self.hidden is None else self.hidden.shape[1]
        if have < num_objects:
            new = torch.zeros((1, num_objects - have, self.hidden_dim, h, w), device=key.device)
            self.hidden = new if self.hidden is None else torch.cat([self.hidden, new], 1)

    # -- objects and stats -----------------------------------------------------------------
    def forget(self, index: int) -> None:
        """Remove object ``index`` (0-based, in start order) from every memory."""
        if self.hidden is not None and index < self.hidden.shape[1]:
            self.hidden = torch.cat([self.hidden[:, :index], self.hidden[:, index + 1:]], 1)
        start = 0
        for gi, size in enumerate(self.work.group_sizes()):
            if start <= index < start + size:
                if gi < self.long.num_groups:
                    self.long.remove_object(gi, index - start)
                self.work.remove_object(gi, index - start)
                break
            start += size
        if not self.long.num_groups:  # no values left for its keys
            self.long.clear()

    @property
    def frames_kept(self) -> int:
        return self.work.size // self.hw if self.hw else 0

    def nbytes(self) -> int:
        hidden = 0 if self.hidden is None else self.hidden.numel() * self.hidden.element_size()
        return self.work.nbytes() + self.long.nbytes() + hidden
