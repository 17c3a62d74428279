"""Which detector class goes to which CVAT label: by name, or as the user maps it; never guessed.

A detector class takes the task label of the same name (exact first, then case-insensitive);
``--label-map person=pedestrian,car=vehicle`` names the rest. Classes left without a label
are reported, not uploaded. Only labels that can hold rectangles (type ``any`` or
``rectangle``, and not a skeleton's sub-label) take tracks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from autotrack.detectors import class_filter
from autotrack.errors import InputError

BOX_LABEL_TYPES = frozenset({"any", "rectangle"})


@dataclass(frozen=True)
class TaskLabel:
    """One label of a CVAT task (or of its project), as the labels endpoint lists it."""

    id: int
    name: str
    type: str = "any"
    attribute_defaults: Mapping[int, str] = field(default_factory=dict)  # spec id -> default

    @property
    def takes_boxes(self) -> bool:
        return self.type in BOX_LABEL_TYPES

    def __str__(self) -> str:
        return f"{self.name!r} (id {self.id})"


@dataclass(frozen=True)
class LabelPlan:
    """What to track and where it goes."""

    label_of_class: dict[str, TaskLabel]  # detector class name -> task label, tracked classes
    class_ids: np.ndarray  # detector class ids to track, ascending
    unmatched_classes: tuple[str, ...]  # detector classes without a label (reported only)
    unused_labels: tuple[TaskLabel, ...]  # box labels no tracked class goes to
    restricted: bool  # True when --classes chose the classes

    def label_ids(self) -> dict[str, int]:
        return {name: label.id for name, label in self.label_of_class.items()}


def parse_label_map(text: str | None) -> list[tuple[str, str]]:
    """``"a=b,c=d"`` as ``[("a", "b"), ("c", "d")]``; names are stripped, order kept."""
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise InputError(
                f"bad --label-map entry {item.strip()!r}: use DETECTOR_CLASS=TASK_LABEL, "
                "comma-separated")
        pairs.append((source.strip(), target.strip()))
    return pairs


def _label_index(
    labels: Sequence[TaskLabel],
) -> tuple[dict[str, TaskLabel], dict[str, list[TaskLabel]]]:
    exact = {label.name: label for label in labels}
    folded: dict[str, list[TaskLabel]] = {}
    for label in labels:
        folded.setdefault(label.name.strip().casefold(), []).append(label)
    return exact, folded


def _find_label(name: str, exact: Mapping[str, TaskLabel],
                folded: Mapping[str, list[TaskLabel]]) -> TaskLabel | list[TaskLabel] | None:
    """The label named ``name``: exact match, else the one case-insensitive match, else
    the list of ambiguous matches, else None."""
    if name in exact:
        return exact[name]
    matches = folded.get(name.strip().casefold(), [])
    if len(matches) == 1:
        return matches[0]
    return matches or None


def _names(labels: Iterable[TaskLabel]) -> str:
    return ", ".join(repr(label.name) for label in labels) or "none"


def plan_labels(
    class_names: Sequence[str],
    task_labels: Sequence[TaskLabel],
    *,
    label_map: str | None = None,
    classes: Sequence[str] | None = None,
    task_name: str = "the task",
) -> LabelPlan:
    """Map detector classes to task labels; raise InputError for anything ambiguous or wrong."""
    exact, folded = _label_index(task_labels)
    by_class: dict[str, TaskLabel] = {}
    problems: dict[str, str] = {}  # class -> why it has no label (only for matching by name)

    for source, target in parse_label_map(label_map):
        class_id = int(class_filter(class_names, [source])[0])  # unknown class: InputError
        name = class_names[class_id]
        if name in by_class:
            raise InputError(f"--label-map maps detector class {name!r} twice")
        found = _find_label(target, exact, folded)
        if found is None:
            raise InputError(f"--label-map {source}={target}: {task_name} has no label "
                             f"{target!r} (labels: {_names(task_labels)})")
        if isinstance(found, list):
            raise InputError(f"--label-map {source}={target}: {task_name} has several labels "
                             f"named like that ({_names(found)}); use the exact name")
        if not found.takes_boxes:
            raise InputError(f"--label-map {source}={target}: label {found} is of type "
                             f"{found.type!r}; tracks of boxes need a label of type 'any' or "
                             "'rectangle'")
        by_class[name] = found

    for name in class_names:
        if name in by_class:
            continue
        found = _find_label(name, exact, folded)
        if found is None:
            continue
        if isinstance(found, list):
            problems[name] = (f"{task_name} has several labels named like {name!r} "
                              f"({_names(found)}); pick one with --label-map {name}=LABEL")
        elif not found.takes_boxes:
            problems[name] = (f"label {found} is of type {found.type!r}, which cannot hold "
                              "boxes")
        else:
            by_class[name] = found

    if classes:
        wanted = class_filter(class_names, classes)  # unknown names: InputError with hints
        chosen = [class_names[i] for i in wanted.tolist()]
        missing = [name for name in chosen if name not in by_class]
        if missing:
            name = missing[0]
            why = problems.get(name, f"{task_name} has no label named {name!r}")
            raise InputError(f"--classes {name}: {why} (labels: {_names(task_labels)}); map it "
                             f"with --label-map {name}=LABEL")
        tracked = chosen
    else:
        tracked = [name for name in class_names if name in by_class]
    if not tracked:
        hint = "; ".join(problems.values())
        raise InputError(
            f"no detector class matches a label of {task_name} (labels: {_names(task_labels)})"
            f"{'; ' + hint if hint else ''}; map one with --label-map CLASS=LABEL")

    label_of_class = {name: by_class[name] for name in tracked}
    used = {label.id for label in label_of_class.values()}
    index = {name: i for i, name in enumerate(class_names)}
    return LabelPlan(
        label_of_class=label_of_class,
        class_ids=np.array(sorted(index[name] for name in tracked), dtype=np.int64),
        unmatched_classes=tuple(name for name in class_names if name not in by_class),
        unused_labels=tuple(label for label in task_labels
                            if label.takes_boxes and label.id not in used),
        restricted=bool(classes),
    )
