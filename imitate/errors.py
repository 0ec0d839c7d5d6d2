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


class ExpertFalls(ExpertError):
    """The expert alone fell from phase 0 in the check before any round (pipeline.check_expert):
    which expert, when, at what phase and why, and the file that keeps the check."""

    def __init__(self, clip: str, expert: str, time_s: float, horizon_s: float, phase: float, cause: str,
                 path: object, hint: str = ""):
        self.clip, self.expert, self.path = clip, expert, str(path)
        self.time_s, self.horizon_s, self.phase, self.cause = time_s, horizon_s, phase, cause
        super().__init__(f"{clip}: {self.fall()}; DAgger cannot outlive its expert, so no round was run "
                         f"({self.path}; --no-expert-check learns anyway{hint})")

    def fall(self) -> str:
        """When and why, in words: 'the search expert alone falls at 1.67 s of 2.13 (phase 0.78: ...)'."""
        return (f"the {self.expert} expert alone falls at {self.time_s:.2f} s of {self.horizon_s:.3g} "
                f"(phase {self.phase:.2f}: {self.cause})")
