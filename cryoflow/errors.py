"""Typed errors for cryoflow.

Every error inherits from :class:`CryoflowError` and from the matching built-in, so callers
can catch either. Messages say what was received, what is allowed, and name the file.
"""

from __future__ import annotations


class CryoflowError(Exception):
    """Base class of every cryoflow error."""


class InputFileError(CryoflowError, ValueError):
    """An input file is malformed, truncated, inconsistent or unsafe."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AngleFileError(InputFileError):
    """A tilt-angle file (.tlt, .rawtlt, .mdoc) cannot be used."""


class InvalidNameError(CryoflowError, ValueError):
    """A dataset, tomogram or result name is not on the allow-list."""


class GeometryError(CryoflowError, ValueError):
    """Tilt geometry or array shapes are inconsistent."""


class StoreError(CryoflowError, OSError):
    """A dataset store is missing, incomplete, or would be overwritten."""


class NodeNotFoundError(StoreError, FileNotFoundError):
    """A tomogram or result does not exist in the store (or is incomplete)."""


class AlreadyExistsError(StoreError, FileExistsError):
    """A result exists and overwriting was not asked for."""


class UnsafeStoreError(StoreError):
    """A store holds something cryoflow refuses to load (object dtype, pickle codecs)."""


class ConfigError(CryoflowError, ValueError):
    """A pipeline or command configuration is invalid."""


class CheckpointError(CryoflowError, ValueError):
    """A model checkpoint is missing, malformed or unsafe."""


class TrainingError(CryoflowError, RuntimeError):
    """A network's training failed (e.g. its loss diverged)."""


class ChunkAlignmentError(CryoflowError, ValueError):
    """A write region does not line up with the target array's chunks."""


class CryoflowWarning(UserWarning):
    """Base class of every cryoflow warning."""


class NonStandardInputWarning(CryoflowWarning):
    """An input file is non-standard (no MAP stamp, odd machine stamp, ...) but still usable."""


class StaleResultError(NodeNotFoundError):
    """A stored result was computed from an input that has since been replaced."""


class InputFilesError(InputFileError):
    """Several input files cannot be used; ``errors`` holds one error per file, in input order."""

    def __init__(self, errors: list[CryoflowError], n_inputs: int) -> None:
        self.errors = list(errors)
        self.n_inputs = n_inputs
        CryoflowError.__init__(
            self,
            f"{len(self.errors)} of {n_inputs} input files cannot be used, nothing was written: "
            + " | ".join(f"[{i + 1}] {e}" for i, e in enumerate(self.errors)),
        )
        self.path = ", ".join(getattr(e, "path", "?") for e in self.errors)
        self.problem = str(self)
