"""Compressed MRC input (``.gz``, ``.bz2``): checked header first, then streamed to a file.

:func:`decompress_mrc` decompresses, streaming, into a temporary file after the size its header
declares passed the limit; a stream that runs past the declared size is cut off and refused.
"""

from __future__ import annotations

import bz2
import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cryoflow.errors import InputFileError
from cryoflow.io.mrc_raw import HEADER_BYTES, MAX_DATA_BYTES, MAX_SIDE, check_raw_header

MAX_EXPANDED_BYTES = 64 * 2**30
COMPRESSED_SUFFIXES: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open}


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
    raw = check_raw_header(src, head, max_side=max_side, max_bytes=max_bytes)
    return HEADER_BYTES + raw.nsymbt + int(np.prod(raw.shape, dtype=np.int64)) * raw.dtype.itemsize
