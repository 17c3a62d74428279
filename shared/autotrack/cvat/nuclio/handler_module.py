"""A Nuclio function's ``main.py`` imported as a module of its own, outside Nuclio.

Every function's handler file is called ``main.py``, so each needs its own module name to be
imported next to the others (tests, the fuzzing campaign, benchmarks run several in one
process). nuclio-sdk's test platform finds ``init_context`` through ``sys.modules``, so the
module is registered there before it runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_handler_module(main_py: Path, name: str) -> ModuleType:
    """``main_py`` imported as module ``name`` (once: later calls return the same module);
    no bytecode is written next to it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, main_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"{main_py} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a half-run module must not be found next time
        raise
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module
