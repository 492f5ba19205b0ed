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

    def __reduce__(self) -> tuple[object, ...]:  # picklable across Dask workers
        return (type(self), (self.path, self.problem))


class AngleFileError(InputFileError):
    """A tilt-angle file (.tlt, .rawtlt, .mdoc) cannot be used."""


class AlignmentFileError(InputFileError):
    """An alignment file made elsewhere (IMOD .xf/.tlt, AreTomo .aln) cannot be used."""


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


class CorruptChunkError(StoreError):
    """A stored chunk fails its checksum or cannot be decoded.

    ``array`` is the array's store path, ``chunk`` the chunk's grid index (of the shard, for a
    sharded array) and ``key`` its store key.
    """

    def __init__(self, message: str, *, array: str, chunk: tuple[int, ...], key: str) -> None:
        super().__init__(message)
        self.array = array
        self.chunk = tuple(chunk)
        self.key = key

    def __reduce__(self) -> tuple[object, ...]:  # picklable across Dask workers
        return (_corrupt_chunk, (str(self), self.array, self.chunk, self.key))


def _corrupt_chunk(message: str, array: str, chunk: tuple[int, ...], key: str) -> CorruptChunkError:
    return CorruptChunkError(message, array=array, chunk=chunk, key=key)


class ClusterError(CryoflowError, RuntimeError):
    """The Dask cluster could not finish the work: its scheduler was lost, a task stalled."""


class SchedulerLostError(ClusterError):
    """The client lost its connection to the Dask scheduler mid run (a rerun resumes)."""


class StalledTaskError(ClusterError):
    """A tomogram's step finished no chunk for longer than its time limit."""


class ConfigError(CryoflowError, ValueError):
    """A pipeline or command configuration is invalid."""


class CheckpointError(CryoflowError, ValueError):
    """A model checkpoint is missing, malformed or unsafe."""


class ChunkAlignmentError(CryoflowError, ValueError):
    """A write region does not line up with the target array's chunks (or shards)."""


class SourceTypeError(CryoflowError, TypeError):
    """A function was given data of a type it does not take (e.g. NumPy where Dask is needed)."""


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

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errors, self.n_inputs))


class MissingTiltRangeError(GeometryError):
    """A tomogram's tilt range (its missing wedge) is needed but was never recorded."""


def one_line(exc: BaseException) -> str:
    """An error that is not cryoflow's own as one line naming the file when it has one:
    ``PATH: Not a directory (NotADirectoryError)``, else ``message (TypeName)``."""
    filename = getattr(exc, "filename", None)
    text = (getattr(exc, "strerror", None) if filename else None) or str(exc)
    text = text.strip().splitlines()[0] if text.strip() else ""
    kind = type(exc).__name__
    if filename:
        other = getattr(exc, "filename2", None)
        where = f"{filename} -> {other}" if other else str(filename)
        return f"{where}: {text} ({kind})" if text else f"{where}: {kind}"
    return f"{text} ({kind})" if text else kind
