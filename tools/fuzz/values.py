"""Seeded mutations of JSON values: the numbers, strings and containers a request is made of.

Everything here takes a :class:`random.Random` and returns new values; nothing is random
without it, so a seed replays a campaign. Values stay what a JSON decoder can hand a Nuclio
handler: ``NaN`` and ``Infinity`` (Python's ``json`` reads them), integers of up to 4300
digits (its limit), lone surrogates (``"\\ud800"`` decodes to one), nesting a few hundred
deep (the C decoder's recursion limit is about a thousand).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

Path = tuple  # keys and indices from the root

HUGE_INT_DIGITS = 4000  # under CPython's 4300-digit limit on int <-> str

INTERESTING_NUMBERS: tuple[Any, ...] = (
    0, 1, -1, 2, 3, 7, 16, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1000, 1001, 4096,
    8192, 8193, 65535, 65536, 2**31 - 1, 2**31, -2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
    -2**63 - 1, 2**64, 10**12, 10**18, 10**400, -10**400, 10**HUGE_INT_DIGITS,
    0.0, -0.0, 0.5, -0.5, 0.4999, 1e-9, 1e-300, 5e-324, 1.5, 1e6, 1e7, 1e7 + 1, 1e15,
    1e308, -1e308, 1.7976931348623157e308, math.nan, math.inf, -math.inf,
)
INTERESTING_STRINGS: tuple[str, ...] = (
    "", " ", "a", "0", "1", "-1", "1e999", "NaN", "Infinity", "null", "true", "[]", "{}",
    "\x00", "\ud800", "\udfff", "\u202e", "é", "日本", "😀", "%s%s%n", "../../etc/passwd",
    "rectangle", "polygon", "mask", "points", "ellipse", "skeleton", "image",
    "data:image/jpeg;base64,", "AAAA", "====", "!!!!",
)


def huge_string(rng: random.Random) -> str:
    size = rng.choice((1000, 5000, 70_000, 1_000_000))
    unit = rng.choice(("A", "x", "\u00e9", "\ud800", "{", "[", "0", "\\"))
    return unit * size


def number(rng: random.Random) -> Any:
    return rng.choice(INTERESTING_NUMBERS)


def string(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return huge_string(rng)
    return rng.choice(INTERESTING_STRINGS)


def nested(rng: random.Random, depth: int | None = None, leaf: Any = 0) -> Any:
    """A list (or object) nested ``depth`` deep: deep enough to hurt recursive code, not
    deeper than a JSON decoder hands over (see the module docstring)."""
    depth = depth if depth is not None else rng.choice((20, 100, 500, 900))
    value = leaf
    as_dict = rng.random() < 0.3
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


def wide(rng: random.Random) -> Any:
    size = rng.choice((100, 1000, 10_000, 100_000))
    kind = rng.random()
    if kind < 0.4:
        return [0] * size
    if kind < 0.7:
        return [[1, 1]] * size
    if kind < 0.85:
        return {f"k{i}": i for i in range(min(size, 20_000))}
    return [rng.random() * 1000 for _ in range(min(size, 20_000))]


def anything(rng: random.Random) -> Any:
    """One value of any JSON kind, weighted towards the ones that break code."""
    roll = rng.random()
    if roll < 0.35:
        return number(rng)
    if roll < 0.55:
        return string(rng)
    if roll < 0.62:
        return rng.choice((None, True, False))
    if roll < 0.72:
        return rng.choice(([], {}, [None], [[]], [{}], {"": None}))
    if roll < 0.82:
        return nested(rng)
    if roll < 0.9:
        return wide(rng)
    return [number(rng) for _ in range(rng.choice((1, 2, 3, 4, 5, 8)))]


def tweak_number(value: float, rng: random.Random, scale: float | None = None) -> Any:
    """A number near ``value`` or its type's edges: negated, off by a pixel or half, times a
    million, as a float or an int or a bool or a string."""
    ops: list[Callable[[], Any]] = [
        lambda: -value,
        lambda: value + 1,
        lambda: value - 1,
        lambda: value + 0.5,
        lambda: value * 1e6,
        lambda: float(value) if isinstance(value, int) else int(value) if math.isfinite(value)
        else 0,
        lambda: str(value) if abs(value) < 1e300 else "1e999",
        lambda: bool(value),
        lambda: math.nan,
        lambda: rng.choice((math.inf, -math.inf)),
        lambda: number(rng),
        lambda: [value],
    ]
    if scale:
        ops += [lambda: scale, lambda: scale + 1, lambda: scale - 0.4, lambda: scale * 1000,
                lambda: -scale]
    try:
        return rng.choice(ops)()
    except (OverflowError, ValueError):
        return number(rng)


def tweak_string(value: str, rng: random.Random) -> Any:
    ops: list[Callable[[], Any]] = [
        lambda: value[: rng.randrange(len(value) + 1)],
        lambda: value + rng.choice(("x", "\x00", "\ud800", " ", "=", "\n", "é")),
        lambda: value[::-1],
        lambda: value.upper(),
        lambda: value * rng.choice((2, 10)),
        lambda: string(rng),
        lambda: [value],
        lambda: {"value": value},
        lambda: None,
    ]
    if value:
        def flip() -> str:
            i = rng.randrange(len(value))
            return value[:i] + chr((ord(value[i]) + rng.randrange(1, 50)) % 0x10FFFF) + \
                value[i + 1:]
        ops.append(flip)
    return rng.choice(ops)()


def tweak_list(value: list, rng: random.Random, repeat_to: tuple[int, ...] = ()) -> Any:
    ops: list[Callable[[], Any]] = [
        list,
        lambda: value[:-1],
        lambda: value[1:],
        lambda: value + [anything(rng)],
        lambda: [anything(rng)] + value,
        lambda: [value],
        lambda: value[: len(value) // 2],
        lambda: rng.sample(value, len(value)),
        lambda: {str(i): v for i, v in enumerate(value)},
        lambda: value * 2,
        lambda: None,
    ]
    if value:
        for target in repeat_to or (8, 100):
            ops.append(lambda target=target: (value * (target // len(value) + 1))[:target])
        ops.append(lambda: [value[0]] * rng.choice((2, 3, 50)))
    return rng.choice(ops)()


def tweak_dict(value: dict, rng: random.Random) -> Any:
    ops: list[Callable[[], Any]] = [
        lambda: {**value, rng.choice(("extra", "__proto__", "", "image ", "IMAGE")):
                 anything(rng)},
        lambda: list(value.values()),
        lambda: list(value.items()),
        dict,
        lambda: None,
    ]
    if value:
        def drop() -> dict:
            key = rng.choice(list(value))
            return {k: v for k, v in value.items() if k != key}
        ops += [drop, drop]
    return rng.choice(ops)()


# --- paths ---------------------------------------------------------------------------------


def paths(value: Any, limit: int = 400, *, skip: Callable[[Path], bool] | None = None) -> list:
    """Paths to the nodes of ``value`` (the root is ``()``); long lists are sampled."""
    found: list[Path] = []
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack and len(found) < limit:
        path, node = stack.pop()
        if skip is not None and path and skip(path):
            continue
        found.append(path)
        if isinstance(node, dict):
            stack.extend((path + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            indices = range(len(node)) if len(node) <= 16 else \
                [0, 1, len(node) // 2, len(node) - 1]
            stack.extend((path + (i,), node[i]) for i in indices)
    return found


def depth(value: Any, limit: int = 1000) -> int:
    """How deep lists and objects nest in ``value`` (counted up to ``limit``)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level >= limit:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node[:16])
    return deepest


def get(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def put(value: Any, path: Path, new: Any) -> Any:
    """``value`` with the node at ``path`` replaced (the root when the path is empty)."""
    if not path:
        return new
    parent = get(value, path[:-1])
    parent[path[-1]] = new
    return value


def delete(value: Any, path: Path) -> Any:
    if not path:
        return None
    parent = get(value, path[:-1])
    del parent[path[-1]]
    return value


def mutate_node(node: Any, rng: random.Random, *, scale: float | None = None,
                repeat_to: tuple[int, ...] = ()) -> tuple[Any, str]:
    """A mutation of one node chosen by its type, and what it was."""
    if rng.random() < 0.2:
        return anything(rng), "replaced"
    if isinstance(node, bool):
        return rng.choice((not node, int(node), str(node).lower(), None)), "bool"
    if isinstance(node, (int, float)):
        return tweak_number(node, rng, scale), "number"
    if isinstance(node, str):
        return tweak_string(node, rng), "string"
    if isinstance(node, list):
        return tweak_list(node, rng, repeat_to), "list"
    if isinstance(node, dict):
        return tweak_dict(node, rng), "object"
    return anything(rng), "replaced"


def mutate_somewhere(body: Any, rng: random.Random, *, skip: Callable[[Path], bool] | None = None,
                     scale: float | None = None,
                     repeat_to: tuple[int, ...] = ()) -> tuple[Any, str]:
    """``body`` with one random node mutated (in place where it can be) or deleted."""
    candidates = paths(body, skip=skip)
    path = rng.choice(candidates)
    if path and rng.random() < 0.15:
        return delete(body, path), f"delete {_show(path)}"
    new, how = mutate_node(get(body, path), rng, scale=scale, repeat_to=repeat_to)
    return put(body, path, new), f"{how} at {_show(path)}: {describe(new)}"


def describe(value: Any, width: int = 60) -> str:
    """A short, safe description of a value for the report."""
    if isinstance(value, str):
        if len(value) > 24:
            return f"str[{len(value)}]({value[:12]!r}...)"
        return repr(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**20 else f"int[{len(str(abs(value)))} digits]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        depth = 0
        inner = value
        while isinstance(inner, list) and len(inner) == 1:
            depth, inner = depth + 1, inner[0]
        if depth > 3:
            return f"list nested {depth} deep"
        return f"list[{len(value)}]"
    if isinstance(value, dict):
        return f"object[{len(value)}]"
    return type(value).__name__[:width]


def _show(path: Path) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "root"
