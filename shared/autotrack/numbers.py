"""The one parser for numbers that come from outside: request fields and tracker states.

Every door (the Nuclio request code, :mod:`autotrack.state`, the SOT and VOS states and
shapes) reads an untrusted number through :func:`parse_number`, :func:`parse_integer` or
:func:`parse_numbers`, so that all of them refuse the same things the same way:

- anything that is not a number: strings, ``null``, lists, objects, and booleans (``True`` is
  an ``int`` to Python, never a coordinate to us);
- NaN and infinities (Python's ``json`` reads ``NaN`` and ``Infinity``);
- integers with an absurd number of digits, refused from their bit length *before* any
  conversion (``float(10**400)`` raises OverflowError, ``str(10**5000)`` ValueError);
- numbers outside the field's own range, which every caller states.

Problems are :class:`NumberError`, an :class:`~autotrack.errors.InputError` (so a Nuclio
handler answers 400) and a ValueError (so ``except ValueError`` callers keep working); its
message names the field (``what``) and never quotes more than a few characters of the input.

:func:`describe` is how a message shows any untrusted value: short, never recursive (a list
nested 3,000 deep is "an array", a 33 MB string its first characters).
"""

from __future__ import annotations

import json
import math

import numpy as np

from autotrack.errors import InputError

MAX_INT_BITS = 64  # larger ints (20 digits and more) are refused before any conversion
MAX_MAGNITUDE = 1e15  # the default range: any number a float holds to a tenth
MAX_COORDINATE = 1e6  # pixel coordinates in requests and states (frames are <= 65535 a side)
QUOTE_CHARS = 32  # at most this many characters of an untrusted string go into a message


class NumberError(InputError, ValueError):
    """An untrusted value is not a finite number in its field's range."""


def is_number(value: object) -> bool:
    """A real number (int, float or numpy scalar), not a boolean."""
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def parse_number(value: object, what: str, *, low: float = -MAX_MAGNITUDE,
                 high: float = MAX_MAGNITUDE) -> float:
    """``value`` as a float in ``[low, high]``, or NumberError saying why not."""
    return float(_checked(value, what, low, high, integer=False, plural=False))


def parse_integer(value: object, what: str, *, low: int = -(2**53), high: int = 2**53,
                  whole_floats: bool = False) -> int:
    """``value`` as an int in ``[low, high]``; a float is accepted only when ``whole_floats``
    and it has no fractional part (``3.0``, not ``3.5``)."""
    if not whole_floats and isinstance(value, (float, np.floating)):
        raise NumberError(f"{what} must be a whole number, got {describe(value)}")
    return int(_checked(value, what, low, high, integer=True, plural=False))


def parse_numbers(values: object, what: str, *, low: float = -MAX_MAGNITUDE,
                  high: float = MAX_MAGNITUDE, count: int | None = None,
                  max_count: int | None = None) -> list[float]:
    """A list (or tuple, or 1-d array) of numbers in ``[low, high]`` as floats; ``count`` is
    the exact length wanted, ``max_count`` the most accepted (checked before any element)."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise NumberError(f"{what} must be a list of numbers, got a {values.ndim}-d array")
    elif not isinstance(values, (list, tuple)):
        raise NumberError(f"{what} must be a list of numbers, got {describe(values)}")
    if count is not None and len(values) != count:
        raise NumberError(f"{what} must be {count} numbers, got {len(values)}")
    if max_count is not None and len(values) > max_count:
        raise NumberError(f"{what} has {len(values)} numbers, over the limit of {max_count}")
    return [float(_checked(v, what, low, high, integer=False, plural=True)) for v in values]


def _checked(value: object, what: str, low: float, high: float, *, integer: bool,
             plural: bool) -> int | float:
    if not is_number(value):
        if plural:
            raise NumberError(f"{what} must hold numbers only, got {describe(value)}")
        wanted = "a whole number" if integer else "a number"
        raise NumberError(f"{what} must be {wanted} between {_bound(low)} and {_bound(high)}, "
                          f"got {describe(value)}")
    if isinstance(value, (int, np.integer)):
        value = int(value)
        if value.bit_length() > MAX_INT_BITS:
            raise NumberError(f"{what} holds a huge integer (about "
                              f"{int(value.bit_length() * math.log10(2)) + 1} digits); it must "
                              f"lie between {_bound(low)} and {_bound(high)}")
    else:
        value = float(value)
        if not math.isfinite(value):
            raise NumberError(f"{what} holds a non-finite number ({value}); it must be a "
                              f"finite number between {_bound(low)} and {_bound(high)}")
        if integer and not value.is_integer():
            raise NumberError(f"{what} must be a whole number, got {value:g}")
    if not low <= value <= high:
        raise NumberError(f"{what} must lie between {_bound(low)} and {_bound(high)}, got {value:g}")
    return value


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def describe(value: object, limit: int = QUOTE_CHARS) -> str:
    """How an untrusted value is shown in a message, in JSON's words and at most ``limit``
    characters of it: 'a string ("rect...")', 'an array', 'a number (3.5)', 'a huge number'."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, np.integer)):
        value = int(value)
        return f"a number ({value})" if value.bit_length() <= 40 else "a huge number"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return f"a number ({value:g})" if not math.isfinite(value) or abs(value) < 1e12 \
            else "a huge number"
    if isinstance(value, str):
        shown = value if len(value) <= limit else value[:max(limit - 3, 1)] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A short quote of an untrusted value as Python shows it: a string as ``'prefix...'``
    (at most ``limit`` characters of it, control characters escaped), a number as itself
    unless huge, anything else in :func:`describe`'s words ("an array")."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:max(limit - 3, 1)] + "...")
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
            and int(value).bit_length() <= MAX_INT_BITS:
        return str(int(value))
    if isinstance(value, (float, np.floating)) and abs(float(value)) < 1e15:
        return repr(float(value))
    return describe(value, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} characters)"
    return text[:max(limit - len(tail), 0)] + tail


__all__ = ["MAX_COORDINATE", "MAX_INT_BITS", "MAX_MAGNITUDE", "NumberError", "describe", "is_number",
           "parse_integer", "parse_number", "parse_numbers", "quote", "shorten"]
