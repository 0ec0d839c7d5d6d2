"""The project's domain errors, in one place.

Each message says what was expected, what was found, and where (file, frame, dataset).
"""


class ImitateError(Exception):
    """Base class of every error imitate raises on bad input."""


class MotionFormatError(ImitateError, ValueError):
    """A motion clip file is malformed."""

    def __init__(self, path: object, message: str, frame: int | None = None):
        self.path = str(path)
        self.frame = frame
        where = self.path if frame is None else f"{self.path}, frame {frame}"
        super().__init__(f"{where}: {message}")


class ClipNotFoundError(ImitateError, FileNotFoundError):
    """No clip of that name or path exists in the places searched."""


class ConfigError(ImitateError, ValueError):
    """A configuration value is out of its allowed range or of the wrong kind."""


class StoreError(ImitateError, ValueError):
    """A demonstration store is foreign, of another schema or env, or an append is invalid."""


class CheckpointError(ImitateError, ValueError):
    """A checkpoint is not ours, or was trained for another env configuration."""


class ExpertError(ImitateError):
    """The expert cannot perform the clip itself, so nothing could learn it from the expert."""
