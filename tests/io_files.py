"""Helpers for the io/ingest tests: real MRC and angle files written with mrcfile, store snapshots."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import mrcfile
import numpy as np


def write_mrc(
    path: Path,
    data: np.ndarray,
    *,
    voxel_size: float = 2.5,
    extended_header: np.ndarray | None = None,
    exttyp: bytes | None = None,
) -> Path:
    """Write ``data`` (nz, ny, nx) as an MRC file with mrcfile."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = voxel_size
        if extended_header is not None:
            m.set_extended_header(extended_header)
        if exttyp is not None:
            m.header.exttyp = exttyp
    return path


def patch_bytes(path: Path, offset: int, new: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(new)] = new
    path.write_bytes(bytes(raw))


def set_header_int32(path: Path, word: int, value: int) -> None:
    """Overwrite 32-bit header word ``word`` (0-based: 0 nx, 1 ny, 2 nz, 3 mode, 23 nsymbt)."""
    patch_bytes(path, 4 * word, np.array([value], dtype="<i4").tobytes())


def write_tlt(path: Path, angles: np.ndarray | list[float]) -> Path:
    path.write_text("\n".join(f"{a:.2f}" for a in angles) + "\n")
    return path


def write_mdoc(
    path: Path,
    angles: list[float] | np.ndarray,
    *,
    pixel: float = 3.1,
    tilt_axis: float | None = 85.3,
    order: list[int] | None = None,
) -> Path:
    """A SerialEM-style mdoc; sections written in ``order`` (default: Z order)."""
    lines = [f"PixelSpacing = {pixel}", "ImageFile = x.mrc", "DataMode = 1", ""]
    lines.append("[T = SerialEM: Digitized on a test microscope   01-Jan-24  10:00:00    ]")
    lines.append("")
    if tilt_axis is not None:
        lines.append(f"[T =     Tilt axis angle = {tilt_axis}, binning = 1  spot = 8  camera = 0]")
        lines.append("")
    for z in order if order is not None else range(len(angles)):
        lines += [f"[ZValue = {z}]", f"TiltAngle = {angles[z]}", f"PixelSpacing = {pixel}", ""]
    path.write_text("\n".join(lines))
    return path


def gzip_file(src: Path, dest: Path) -> Path:
    with open(src, "rb") as fin, gzip.open(dest, "wb") as fout:
        fout.write(fin.read())
    return dest


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` (relative path -> sha256); {} when it does not exist."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tilt_stack(rng: np.random.Generator, n: int = 8, ny: int = 32, nx: int = 24) -> np.ndarray:
    return rng.normal(size=(n, ny, nx)).astype(np.float32)
