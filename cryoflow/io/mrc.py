"""MRC files: header-first validation, chunked memory-mapped reading, streaming writing.

Reading never trusts the header before checking it: :func:`read_mrc_header` opens the file
with ``mrcfile`` (``permissive=True``, header only), then checks the mode, the sizes (absurd
ones are refused before anything is allocated), and that the data block fits in the file.
Non-standard but usable files (no ``MAP `` stamp, unknown machine stamp, trailing bytes, an axis
order ``mapc, mapr, maps`` other than ``1, 2, 3``) get a
:class:`~cryoflow.errors.NonStandardInputWarning`; a file of another format (a PNG renamed
``.mrc``) is refused as "not an MRC file" (:mod:`cryoflow.io.mrc_raw`). The extended header (FEI
old style, FEI1, FEI2, SerialEM) and the labels are read for pixel size, tilt angles and tilt
axis (:mod:`cryoflow.io.mrc_extended`, in ``MrcInfo.extended``). :func:`read_mrc_block`
memory-maps the data block and copies out one region, in ``(z, y, x)`` order whatever the
header's axis order; :func:`mrc_dask_array` builds a Dask array whose every task reads its own
region, so no task ever holds the whole stack.

Compressed input (``.gz``, ``.bz2``) is decompressed, streaming, into a temporary file by
:func:`decompress_mrc` (:mod:`cryoflow.io.mrc_compressed`) after the size its header declares
passed the limit; a stream that runs past the declared size is cut off and refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import mrcfile
import numpy as np
from dask.base import tokenize
from mrcfile.utils import data_dtype_from_header

from cryoflow.errors import InputFileError, NonStandardInputWarning
from cryoflow.io import mrc_compressed
from cryoflow.io.mrc_extended import ExtendedHeader, parse_extended_header
from cryoflow.io.mrc_raw import (
    HEADER_BYTES,
    MAX_DATA_BYTES,
    MAX_SIDE,
    SUPPORTED_MODES,
    check_raw_header,
    disk_order,
    refuse_other_formats,
)

COMPRESSED_SUFFIXES = mrc_compressed.COMPRESSED_SUFFIXES
MAX_EXPANDED_BYTES = mrc_compressed.MAX_EXPANDED_BYTES
decompress_mrc = mrc_compressed.decompress_mrc
_VALID_MACHST = {(0x44, 0x44), (0x44, 0x41), (0x11, 0x11)}
MAX_EXTENDED_PARSE = 16 * 2**20  # larger extended headers are skipped, not parsed


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
    disk_order : tuple of int
        ``shape[i]`` is the data block's axis ``disk_order[i]`` (sections, rows, columns): the
        header's ``mapc, mapr, maps`` reordered to ``(z, y, x)``; ``(0, 1, 2)`` for standard files.
    axis_order : tuple of int
        The header's ``(mapc, mapr, maps)``.
    extended : ExtendedHeader
        Pixel size, tilt angles and tilt axis from the extended header and labels.
    labels : tuple of str
        The header's text labels.
    """

    path: str
    shape: tuple[int, int, int]
    dtype: str
    mode: int
    data_offset: int
    voxel_size_angstrom: tuple[float, float, float]
    notes: tuple[str, ...] = ()
    disk_order: tuple[int, int, int] = (0, 1, 2)
    axis_order: tuple[int, int, int] = (1, 2, 3)
    extended: ExtendedHeader = ExtendedHeader()
    labels: tuple[str, ...] = ()

    @property
    def disk_shape(self) -> tuple[int, int, int]:
        """(sections, rows, columns) as stored."""
        out = [0, 0, 0]
        for logical, disk in enumerate(self.disk_order):
            out[disk] = self.shape[logical]
        return (out[0], out[1], out[2])

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
    with open(p, "rb") as f:
        head = f.read(HEADER_BYTES)
    refuse_other_formats(p, head)
    if file_size < HEADER_BYTES:
        raise InputFileError(
            p, f"truncated: {file_size} bytes, shorter than the {HEADER_BYTES}-byte MRC header"
        )
    raw = check_raw_header(p, head, max_side=max_side, max_bytes=max_bytes)
    mode, (nz, ny, nx), dtype, nsymbt = raw.mode, raw.shape, raw.dtype, raw.nsymbt
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
    labels = _labels(header)
    extended = _extended(p, head, nsymbt, nz, raw.order, labels)
    notes += list(extended.notes)
    perm = disk_order(raw.axis_order)
    if perm != (0, 1, 2):
        notes.append(
            "axis order mapc, mapr, maps = {}, {}, {} (not 1, 2, 3); read as (z, y, x)".format(
                *raw.axis_order
            )
        )
    if warn:
        for note in notes:
            warnings.warn(f"{p}: {note}", NonStandardInputWarning, stacklevel=2)
    cella = (float(header.cella.z), float(header.cella.y), float(header.cella.x))
    grid = (int(header.mz), int(header.my), int(header.mx))
    vs = tuple(
        c / g if g > 0 and np.isfinite(c) and c > 0 else 0.0
        for c, g in zip(cella, grid, strict=True)
    )
    disk = (nz, ny, nx)
    return MrcInfo(
        path=str(p.resolve()),
        shape=(disk[perm[0]], disk[perm[1]], disk[perm[2]]),
        dtype=dtype.str,
        mode=mode,
        data_offset=offset,
        voxel_size_angstrom=vs,  # type: ignore[arg-type]
        notes=tuple(notes),
        disk_order=perm,
        axis_order=raw.axis_order,
        extended=extended,
        labels=labels,
    )


def _labels(header: Any) -> tuple[str, ...]:
    n = max(0, min(10, int(header.nlabl)))
    out = []
    for raw in list(header.label)[:n]:
        text = bytes(raw).decode("latin-1").strip("\0 ").strip()
        if text:
            out.append(text)
    return tuple(out)


def _extended(
    p: Path, head: bytes, nsymbt: int, nz: int, order: str, labels: tuple[str, ...]
) -> ExtendedHeader:
    """Parse the extended header (when of a sane size) and the labels."""
    ext = b""
    if 0 < nsymbt <= MAX_EXTENDED_PARSE:
        with open(p, "rb") as f:
            f.seek(HEADER_BYTES)
            ext = f.read(nsymbt)
    nint, nreal = (int(v) for v in np.frombuffer(head[128:132], dtype=np.dtype(f"{order}i2")))
    return parse_extended_header(
        ext,
        exttyp=head[104:108],
        nint=nint,
        nreal=nreal,
        n_sections=nz,
        byte_order=order,
        labels=labels,
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
    index : tuple of 3 slices into ``info.shape``, (z, y, x) (the header's axis order undone)

    Returns
    -------
    ndarray of the region's shape, native byte order.
    """
    mm = np.memmap(
        info.path,
        dtype=np.dtype(info.dtype),
        mode="r",
        offset=info.data_offset,
        shape=info.disk_shape,
    )
    disk_index: list[slice] = [slice(None)] * 3
    for logical, disk in enumerate(info.disk_order):
        disk_index[disk] = index[logical]
    try:  # read in stored order, then put the axes in (z, y, x) order
        block = np.array(mm[tuple(disk_index)]).transpose(info.disk_order)
    finally:
        del mm
    block = np.ascontiguousarray(block)
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
