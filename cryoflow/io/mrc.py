"""MRC files: header-first validation, chunked memory-mapped reading, streaming writing.

Reading never trusts the header before checking it: :func:`read_mrc_header` opens the file
with ``mrcfile`` (``permissive=True``, header only), then checks the mode, the sizes (absurd
ones are refused before anything is allocated), and that the data block fits in the file.
Non-standard but usable files (no ``MAP `` stamp, unknown machine stamp, trailing bytes) get a
:class:`~cryoflow.errors.NonStandardInputWarning`. :func:`read_mrc_block` memory-maps the
data block and copies out one region; :func:`mrc_dask_array` builds a Dask array whose every
task reads its own region, so no task ever holds the whole stack.

Compressed input (``.gz``, ``.bz2``) is decompressed, streaming, into a temporary file by
:func:`decompress_mrc` after the size its header declares passed the limit; a stream that
runs past the declared size is cut off and refused.
"""

from __future__ import annotations

import bz2
import gzip
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import mrcfile
import numpy as np
from dask.base import tokenize
from mrcfile.dtypes import HEADER_DTYPE
from mrcfile.utils import data_dtype_from_header

from cryoflow.errors import InputFileError, NonStandardInputWarning

HEADER_BYTES = 1024
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
MAX_SIDE = 65536
MAX_DATA_BYTES = 2**40
MAX_EXPANDED_BYTES = 64 * 2**30
COMPRESSED_SUFFIXES: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open}
_VALID_MACHST = {(0x44, 0x44), (0x44, 0x41), (0x11, 0x11)}


@dataclass(frozen=True)
class MrcInfo:
    """What :func:`read_mrc_header` learnt about one MRC file.

    Attributes
    ----------
    path : str
    shape : tuple of int, (nz, ny, nx)
        Sections (tilts or z), rows, columns.
    dtype : str
        Data dtype with byte order, e.g. ``"<f4"``.
    mode : int
    data_offset : int
        Bytes before the data block (1024 + extended header).
    voxel_size_angstrom : tuple of float, (z, y, x)
        From the header; 0 where the header does not say.
    notes : tuple of str
        Non-standard features found (also issued as warnings).
    """

    path: str
    shape: tuple[int, int, int]
    dtype: str
    mode: int
    data_offset: int
    voxel_size_angstrom: tuple[float, float, float]
    notes: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def read_mrc_header(
    path: str | os.PathLike[str],
    *,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_DATA_BYTES,
    warn: bool = True,
) -> MrcInfo:
    """Read and check an MRC header without touching the data block.

    Raises
    ------
    InputFileError
        Unsupported mode, absurd or non-positive sizes, negative extended header, or a data
        block longer than the file (truncated: the message gives expected and actual bytes).
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file")
    file_size = p.stat().st_size
    if file_size < HEADER_BYTES:
        raise InputFileError(
            p, f"truncated: {file_size} bytes, shorter than the {HEADER_BYTES}-byte MRC header"
        )
    with open(p, "rb") as f:
        head = f.read(HEADER_BYTES)
    mode, (nz, ny, nx), dtype, nsymbt = _check_raw_header(
        p, head, max_side=max_side, max_bytes=max_bytes
    )
    nbytes = nx * ny * nz * dtype.itemsize
    offset = HEADER_BYTES + nsymbt
    expected = offset + nbytes
    if file_size < expected:
        raise InputFileError(
            p,
            f"truncated: header ({nz} x {ny} x {nx}, mode {mode}, extended header {nsymbt} bytes) "
            f"needs {expected} bytes, the file has {file_size} bytes",
        )
    # sizes are sane and the file is long enough: now let mrcfile parse the rest
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            with mrcfile.open(p, mode="r", permissive=True, header_only=True) as m:
                header = m.header.copy()
        except (ValueError, OSError, EOFError) as exc:
            raise InputFileError(p, f"not a readable MRC file: {exc}") from exc
    if data_dtype_from_header(header) != dtype:
        raise InputFileError(
            p,
            f"ambiguous byte order: mrcfile reads {data_dtype_from_header(header)}, expected {dtype}",
        )
    notes = _non_standard(header, file_size, expected)
    if warn:
        for note in notes:
            warnings.warn(f"{p}: {note}", NonStandardInputWarning, stacklevel=2)
    cella = (float(header.cella.z), float(header.cella.y), float(header.cella.x))
    grid = (int(header.mz), int(header.my), int(header.mx))
    vs = tuple(
        c / g if g > 0 and np.isfinite(c) and c > 0 else 0.0
        for c, g in zip(cella, grid, strict=True)
    )
    return MrcInfo(
        path=str(p.resolve()),
        shape=(nz, ny, nx),
        dtype=dtype.str,
        mode=mode,
        data_offset=offset,
        voxel_size_angstrom=vs,  # type: ignore[arg-type]
        notes=tuple(notes),
    )


def _non_standard(header: Any, file_size: int, expected: int) -> list[str]:
    notes = []
    if bytes(header.map) != b"MAP ":
        notes.append("no 'MAP ' stamp (an old-style MRC file); reading it anyway")
    machst = tuple(int(b) for b in np.asarray(header.machst).tolist()[:2])
    if machst not in _VALID_MACHST:
        order = "little" if data_dtype_from_header(header).str[0] in "<|" else "big"
        notes.append(
            f"unrecognised machine stamp {bytes(np.asarray(header.machst).tobytes()).hex()}; "
            f"reading as {order}-endian"
        )
    if file_size > expected:
        notes.append(f"{file_size - expected} bytes after the data block are ignored")
    return notes


def read_mrc_block(info: MrcInfo, index: tuple[slice, slice, slice]) -> np.ndarray:
    """Copy one region of the data block out of a memory map.

    Parameters
    ----------
    info : MrcInfo
    index : tuple of 3 slices into (nz, ny, nx)

    Returns
    -------
    ndarray of the region's shape, native byte order.
    """
    mm = np.memmap(
        info.path, dtype=np.dtype(info.dtype), mode="r", offset=info.data_offset, shape=info.shape
    )
    try:
        block = np.array(mm[index])
    finally:
        del mm
    return block.astype(block.dtype.newbyteorder("="), copy=False)


def mrc_dask_array(info: MrcInfo, chunks: Sequence[int], *, name: str = "read-mrc") -> da.Array:
    """A lazy ``(nz, ny, nx)`` Dask array over an MRC file, one memory-mapped read per chunk.

    The task names are ``<name>-<token>`` with the token from the path, file size, modification
    time and header, so the graph is deterministic and changes when the file does.
    """
    st = os.stat(info.path)
    token = tokenize(info, st.st_size, st.st_mtime_ns, chunks)
    full = f"{name}-{token}"
    norm = da.core.normalize_chunks(chunks, info.shape)
    starts = [np.cumsum((0, *c[:-1])) for c in norm]
    dsk: dict[Any, Any] = {}
    for i, (zs, zc) in enumerate(zip(starts[0], norm[0], strict=True)):
        for j, (ys, yc) in enumerate(zip(starts[1], norm[1], strict=True)):
            for k, (xs, xc) in enumerate(zip(starts[2], norm[2], strict=True)):
                index = (
                    slice(int(zs), int(zs + zc)),
                    slice(int(ys), int(ys + yc)),
                    slice(int(xs), int(xs + xc)),
                )
                dsk[(full, i, j, k)] = (read_mrc_block, info, index)
    dtype = np.dtype(info.dtype).newbyteorder("=")
    return da.Array(dsk, full, norm, dtype=dtype)


def decompress_mrc(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_expanded_bytes: int = MAX_EXPANDED_BYTES,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_DATA_BYTES,
) -> Path:
    """Stream-decompress a ``.gz``/``.bz2`` MRC into ``dest`` after checking its header.

    Raises
    ------
    InputFileError
        When the header declares more than ``max_expanded_bytes`` after expansion, or the
        stream holds more than the header declares (a decompression bomb), or is corrupt.
    """
    src = Path(path)
    opener = COMPRESSED_SUFFIXES.get(src.suffix.lower())
    if opener is None:
        raise InputFileError(
            src, f"not a compressed MRC (suffix {src.suffix!r}); expected .gz or .bz2"
        )
    out = Path(dest)
    try:
        with opener(src, "rb") as fin:
            head = fin.read(HEADER_BYTES)
            if len(head) < HEADER_BYTES:
                raise InputFileError(
                    src, f"compressed stream holds only {len(head)} bytes, less than an MRC header"
                )
            declared = _declared_size(src, head, max_side=max_side, max_bytes=max_bytes)
            if declared > max_expanded_bytes:
                raise InputFileError(
                    src,
                    f"would expand to {declared} bytes, past the limit of {max_expanded_bytes} bytes",
                )
            written = len(head)
            with open(out, "wb") as fout:
                fout.write(head)
                while chunk := fin.read(1 << 20):
                    written += len(chunk)
                    if written > declared:
                        raise InputFileError(
                            src,
                            f"decompressed stream exceeds the {declared} bytes its header declares; "
                            "refusing (possible decompression bomb)",
                        )
                    fout.write(chunk)
    except (OSError, EOFError, ValueError) as exc:
        out.unlink(missing_ok=True)
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(src, f"corrupt compressed stream: {exc}") from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _declared_size(src: Path, head: bytes, *, max_side: int, max_bytes: int) -> int:
    """Total file size (header + extended header + data) that an MRC header declares."""
    _, shape, dtype, nsymbt = _check_raw_header(src, head, max_side=max_side, max_bytes=max_bytes)
    return HEADER_BYTES + nsymbt + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _check_raw_header(
    p: Path, head: bytes, *, max_side: int, max_bytes: int
) -> tuple[int, tuple[int, int, int], np.dtype, int]:
    """Mode, shape (nz, ny, nx), data dtype and extended-header size from the raw 1024 bytes.

    The byte order comes from the machine stamp, or (old files) from whichever order gives a
    plausible header. Checks happen here, before any library allocates anything.
    """
    if len(head) < HEADER_BYTES:
        raise InputFileError(
            p, f"truncated: {len(head)} bytes, shorter than the {HEADER_BYTES}-byte MRC header"
        )
    stamp = head[212:214]
    orders = (
        [">"]
        if stamp == b"\x11\x11"
        else ["<"]
        if stamp in (b"\x44\x44", b"\x44\x41")
        else ["<", ">"]
    )

    def fields(order: str) -> tuple[int, int, int, int, int]:
        h = np.frombuffer(head, dtype=HEADER_DTYPE.newbyteorder(order), count=1)[0]
        return int(h["mode"]), int(h["nx"]), int(h["ny"]), int(h["nz"]), int(h["nsymbt"])

    order = next(
        (
            o
            for o in orders
            if fields(o)[0] in SUPPORTED_MODES and all(0 < n <= max_side for n in fields(o)[1:4])
        ),
        orders[0],
    )
    mode, nx, ny, nz, nsymbt = fields(order)
    if mode not in SUPPORTED_MODES:
        allowed = ", ".join(f"{m} ({n})" for m, n in SUPPORTED_MODES.items())
        raise InputFileError(p, f"unsupported MRC mode {mode}; supported modes: {allowed}")
    for axis, n in (("nx", nx), ("ny", ny), ("nz", nz)):
        if not 0 < n <= max_side:
            raise InputFileError(p, f"header claims {axis} = {n}; allowed 1..{max_side}")
    dtype = np.dtype(SUPPORTED_MODES[mode]).newbyteorder("<" if order == "<" else ">")
    nbytes = nx * ny * nz * dtype.itemsize
    if nbytes > max_bytes:
        raise InputFileError(
            p,
            f"header claims {nz} x {ny} x {nx} values of {dtype.itemsize} bytes = {nbytes} bytes; "
            f"the limit is {max_bytes} bytes",
        )
    if nsymbt < 0:
        raise InputFileError(p, f"header claims a negative extended header size ({nsymbt} bytes)")
    return mode, (nz, ny, nx), dtype, nsymbt


def write_mrc_header_only(
    path: Path, shape: tuple[int, int, int], dtype: np.dtype, voxel_size_angstrom: float
) -> Any:
    """Create ``path`` as a memory-mapped MRC of ``shape`` (z, y, x); returns the open mrcfile."""
    mrc = mrcfile.new_mmap(path, shape=shape, mrc_mode=_mode_for(dtype), overwrite=True)
    mrc.voxel_size = voxel_size_angstrom
    return mrc


def _mode_for(dtype: np.dtype) -> int:
    inverse = {np.dtype(v): k for k, v in SUPPORTED_MODES.items()}
    return inverse[np.dtype(dtype)]
