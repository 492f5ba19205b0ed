"""The raw 1024-byte MRC header: checked before any library reads it (no allocation).

:func:`check_raw_header` finds the byte order (machine stamp, or the order that gives a
plausible header), refuses unsupported modes, absurd sizes and axis orders that are not a
permutation, and tells a file of another format ("not an MRC file") from an MRC file with an
unsupported mode. Shared by :mod:`cryoflow.io.mrc` and :mod:`cryoflow.io.mrc_compressed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from cryoflow.errors import InputFileError

HEADER_BYTES = 1024
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
MAX_SIDE = 65536
MAX_DATA_BYTES = 2**40
#: every mode some MRC writer uses (a header with another mode and no MAP stamp is no MRC)
KNOWN_MODES = (0, 1, 2, 3, 4, 6, 12, 16, 101)
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\0": "a TIFF image",
    b"MM\0*": "a TIFF image",
    b"GIF8": "a GIF image",
    b"\x89HDF": "an HDF5 file",
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "a gzip stream (name it .gz)",
    b"BZh": "a bzip2 stream (name it .bz2)",
    b"%PDF": "a PDF document",
}


class RawHeader(NamedTuple):
    mode: int
    shape: tuple[int, int, int]  # (nz, ny, nx): sections, rows, columns as stored
    dtype: np.dtype
    nsymbt: int
    order: str  # "<" or ">"
    axis_order: tuple[int, int, int]  # (mapc, mapr, maps)


def check_raw_header(p: Path, head: bytes, *, max_side: int, max_bytes: int) -> RawHeader:
    """Mode, shape (nz, ny, nx), dtype, extended-header size, byte and axis order, from 1024 bytes.

    The byte order comes from the machine stamp, or (old files) from whichever order gives a
    plausible header. A file with no ``MAP `` stamp and no plausible header in either byte order
    is "not an MRC file". Checks happen here, before any library allocates anything.
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

    def plausible(order: str) -> bool:
        f = fields(order)
        return f[0] in KNOWN_MODES and all(0 < n <= 2**20 for n in f[1:4]) and f[4] >= 0

    if head[208:212] != b"MAP " and not any(plausible(o) for o in ("<", ">")):
        raise InputFileError(
            p,
            "not an MRC file: no 'MAP ' stamp at byte 208 and no plausible MRC header "
            f"(first bytes {head[:8]!r})",
        )

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
    h = np.frombuffer(head, dtype=HEADER_DTYPE.newbyteorder(order), count=1)[0]
    axes = (int(h["mapc"]), int(h["mapr"]), int(h["maps"]))
    if axes == (0, 0, 0):  # some old writers leave them unset: standard order
        axes = (1, 2, 3)
    if sorted(axes) != [1, 2, 3]:
        raise InputFileError(
            p,
            "header axis order mapc, mapr, maps = {}, {}, {} is not a permutation of 1, 2, 3; "
            "cannot tell which axis is x, y or z".format(*axes),
        )
    return RawHeader(mode, (nz, ny, nx), dtype, nsymbt, order, axes)


def refuse_other_formats(p: Path, head: bytes) -> None:
    """Raise "not an MRC file" for a file that starts like another format (PNG, TIFF, ...)."""
    if head[208:212] == b"MAP ":
        return
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(p, f"not an MRC file: it starts like {what}")


def disk_order(axis_order: tuple[int, int, int]) -> tuple[int, int, int]:
    """Data-block axis holding z, y and x for ``(mapc, mapr, maps)`` (checked: a permutation)."""
    # the data block is (sections, rows, columns) = (maps, mapr, mapc); 3 = z, 2 = y, 1 = x
    block = (axis_order[2], axis_order[1], axis_order[0])
    return (block.index(3), block.index(2), block.index(1))
