"""Alignments made elsewhere (IMOD .xf + .tlt, AreTomo .aln) reconstruct the raw stack as well
as the same series pre-aligned.

The raw stacks are made from an aligned series (projected about the image y axis by the
simulator) by resampling each image with the alignment's inverse, written out in each format's
own text layout; cryoflow then reconstructs the raw pixels through the imported geometry.
"""

from __future__ import annotations

import dask
import dask.array
import numpy as np
import pytest
from scipy import ndimage

from cryoflow.errors import AlignmentFileError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.alignment import raw_geometry
from cryoflow.io.alignment import (
    find_alignment,
    read_alignment,
    read_aretomo_alignment,
    read_imod_alignment,
)
from cryoflow.pipelines.stages.reconstruct import ReconstructParams, reconstruction
from cryoflow.simulate.tilts import project_sum
from tests.io._phantoms import BACKGROUND, corr, phantom

ANGLES = np.arange(-60.0, 61.0, 4.0)
SHAPE = (16, 48, 48)


def rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # CCW in (x, y)


def warp(image: np.ndarray, a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """raw(r) = aligned(A r + d), centred (x, y) pixel coordinates."""
    n = image.shape[0]
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n].astype(float)
    r = np.stack([xx.ravel() - c, yy.ravel() - c])
    q = a @ r + d[:, None]
    return ndimage.map_coordinates(image, [q[1] + c, q[0] + c], order=3, cval=BACKGROUND).reshape(
        n, n
    )


def recon(images: np.ndarray, geometry: TiltGeometry) -> np.ndarray:
    with dask.config.set(scheduler="synchronous"):
        vol, _ = reconstruction(
            dask.array.from_array(images.astype(np.float32), chunks=(1, -1, -1)),
            geometry,
            ReconstructParams(thickness=SHAPE[0]),
        )
        return np.asarray(vol.compute())


@pytest.fixture(scope="module")
def aligned():
    vol = phantom(SHAPE, radius=14)
    images = project_sum(vol, ANGLES) + BACKGROUND
    return vol, images, recon(images, TiltGeometry.single_axis(ANGLES))


def test_imod_xf_and_tlt(tmp_path, aligned) -> None:
    vol, images, reference = aligned
    rng = np.random.default_rng(5)
    n = ANGLES.size
    theta = -(84.0 + rng.normal(0, 0.5, n))  # the .xf rotates the raw axis (~84 deg) to y
    mag = 1.0 + rng.normal(0, 0.005, n)
    shifts = rng.uniform(-3, 3, (n, 2))
    xf = [mag[t] * rot(theta[t]) for t in range(n)]
    raw = np.stack([warp(images[t], xf[t], shifts[t]) for t in range(n)])
    lines = [
        "".join(f"{v:12.7f}" for v in (a[0, 0], a[0, 1], a[1, 0], a[1, 1]))
        + f"{d[0]:12.3f}{d[1]:12.3f}"
        for a, d in zip(xf, shifts, strict=True)
    ]
    (tmp_path / "TS_01.xf").write_text("\n".join(lines) + "\n")
    (tmp_path / "TS_01.tlt").write_text("".join(f"{a:7.2f}\n" for a in ANGLES))
    (tmp_path / "TS_01.mrc").write_bytes(b"")
    assert find_alignment(tmp_path / "TS_01.mrc") == tmp_path / "TS_01.xf"
    imported = read_alignment(tmp_path / "TS_01.xf")
    assert imported.kept == tuple(range(n)) and imported.source == "IMOD TS_01.xf + TS_01.tlt"
    assert imported.geometry.tilt_axis_deg == pytest.approx(84.0, abs=0.3)
    imported.check_stack(n, "TS_01.mrc")
    out = recon(raw, imported.geometry)
    assert corr(out, reference) > 0.97
    assert abs(corr(out, vol) - corr(reference, vol)) < 0.03
    # the transforms the other way round (aligned -> raw) would give no useful volume
    inv = np.stack([np.linalg.inv(a) for a in xf])
    backwards = np.concatenate([inv, -np.einsum("nij,nj->ni", inv, shifts)[:, :, None]], axis=2)
    wrong = raw_geometry(TiltGeometry.single_axis(ANGLES), backwards)
    assert corr(recon(raw, wrong), reference) < 0.6


def aln_text(n_raw: int, dark: list[int], rows: list[tuple]) -> str:
    lines = [
        "# AreTomo Alignment / Priism bprmMn ",
        f"# RawSize = 48 48 {n_raw}",
        "# NumPatches = 0",
    ]
    lines += [f"# DarkFrame ={d:>6}{d + 1:>5}{-62.0:>9.2f}" for d in dark]
    lines += [
        "# AlphaOffset =     0.00",
        "# BetaOffset =     0.00",
        "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE     TILT",
    ]
    for sec, r, tx, ty, tilt in rows:
        lines.append(
            f"{sec:>5}{r:>11.4f}{1.0:>11.5f}{tx:>11.3f}{ty:>11.3f}{1.0:>9.2f}{1.0:>9.2f}{1.0:>9.2f}{0.0:>9.2f}{tilt:>10.2f}"
        )
    return "\n".join(lines) + "\n"


def test_aretomo_aln_with_a_dark_frame(tmp_path, aligned) -> None:
    vol, images, reference = aligned
    rng = np.random.default_rng(6)
    n = ANGLES.size
    rot_deg = 85.3 + rng.normal(0, 0.3, n)
    t = rng.uniform(-2.5, 2.5, (n, 2))
    # the raw image is the aligned one rotated by ROT (its tilt axis at ROT) and shifted by
    # (TX, TY): r = R(ROT) a + t, i.e. a = R(-ROT) (r - t)
    raw_kept = [warp(images[i], rot(-rot_deg[i]), -rot(-rot_deg[i]) @ t[i]) for i in range(n)]
    raw = np.stack([np.full_like(images[0], BACKGROUND), *raw_kept])  # section 0: a dark frame
    rows = [(i, rot_deg[i], t[i, 0], t[i, 1], ANGLES[i]) for i in range(n)]
    path = tmp_path / "TS_02.aln"
    path.write_text(aln_text(n + 1, [0], rows))
    imported = read_aretomo_alignment(path)
    assert imported.kept == tuple(range(1, n + 1)) and imported.n_raw == n + 1
    assert imported.geometry.tilt_axis_deg == pytest.approx(85.3, abs=0.3)
    out = recon(raw[list(imported.kept)], imported.geometry)
    assert corr(out, reference) > 0.97
    with pytest.raises(AlignmentFileError, match="holds 5 images but the alignment"):
        imported.check_stack(5, "TS_02.mrc")


def test_bad_alignment_files_name_the_file(tmp_path) -> None:
    xf = tmp_path / "a.xf"
    xf.write_text("1 0 0 1 0\n")
    (tmp_path / "a.tlt").write_text("0\n")
    with pytest.raises(AlignmentFileError, match="a.xf: not an IMOD .xf file"):
        read_imod_alignment(xf, tmp_path / "a.tlt")
    xf.write_text("1 0 0 1 0 0\n1 0 0 1 0 0\n")
    with pytest.raises(AlignmentFileError, match="holds 2 transforms but a.tlt lists 1 angles"):
        read_imod_alignment(xf, tmp_path / "a.tlt")
    xf.write_text("0 0 0 0 0 0\n")
    with pytest.raises(AlignmentFileError, match="singular"):
        read_imod_alignment(xf, tmp_path / "a.tlt")
    with pytest.raises(AlignmentFileError, match="b.tlt: no such file"):
        read_imod_alignment(xf, tmp_path / "b.tlt")
    with pytest.raises(AlignmentFileError, match="unknown alignment file type"):
        read_alignment(tmp_path / "a.txt")
