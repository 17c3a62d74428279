"""A seeded fuzzing campaign over the Nuclio functions, the state codec and the prompt-file
reader (issue 12). See docs/fuzzing.md.

Layout: :mod:`fuzz.values` mutates any JSON value (numbers, strings, containers, nesting),
:mod:`fuzz.images` makes and breaks encoded frames, :mod:`fuzz.states` edits tracker states
(and re-signs them with the keyless digest), :mod:`fuzz.targets` knows each function kind
(how it is loaded, what a valid request is, which mutations mean something to it),
:mod:`fuzz.campaign` sends the requests and checks the invariants, and ``run.py`` is the
command line. Import it with ``tools/`` on ``sys.path`` (``run.py`` and tests/test_fuzz.py do).
"""

from __future__ import annotations

KINDS = ("detector", "interactor", "vittrack", "nanotrack", "ostrack", "sam2-tracker", "xmem",
         "bytetrack", "reid", "sam3", "state", "prompts")
