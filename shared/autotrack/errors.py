"""User-facing errors: each carries a one-line message the CLI prints without a traceback."""


class AutotrackError(Exception):
    """Base class for every error a user can cause or fix (bad input, missing model, ...)."""


class InputError(AutotrackError):
    """The video, frame folder or request cannot be read or is malformed."""


class ModelNotFoundError(AutotrackError):
    """A model file is neither on disk nor downloadable."""


class StateError(AutotrackError):
    """Tracker state is malformed, tampered with, too large or of an unknown version."""
