"""A default thickness from the data (or a refusal), and the size report."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.errors import ConfigError
from cryoflow.geometry import TiltGeometry
from cryoflow.geometry.binning import bin_geometry
from cryoflow.kernels.thickness import (
    choose_thickness,
    estimate_thickness,
    preview_bin_factor,
    volume_size,
)
from cryoflow.simulate.tilts import project_sum

ANGLES = np.arange(-60.0, 61.0, 3.0)


def slab(shape, thickness, offset=0, seed=0):
    """Random balls filling a slab ``thickness`` voxels deep, centred ``offset`` off the middle."""
    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    vol = np.zeros(shape, np.float32)
    z, y, x = np.ogrid[:Z, :Y, :X]
    for _ in range(int(150 * X / 128)):
        c = (
            rng.uniform((Z - thickness) / 2 + offset + 2, (Z + thickness) / 2 + offset - 2),
            rng.uniform(0, Y),
            rng.uniform(0, X),
        )
        r = rng.uniform(1.5, 3)
        vol += (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
    return vol


@pytest.mark.parametrize(("thickness", "offset"), [(24, 0), (48, 0), (24, 20)])
def test_estimate_holds_the_specimen_and_not_the_detector_width(thickness, offset) -> None:
    images = project_sum(slab((128, 48, 128), thickness, offset), ANGLES) + 10.0
    choice = estimate_thickness(images, TiltGeometry.single_axis(ANGLES))
    need = 2 * (abs(offset) + thickness / 2)  # a centred volume that holds the slab
    assert need <= choice.thickness <= 1.6 * need + 8
    assert choice.thickness % 8 == 0 and choice.source == "estimated from the data"
    lo, hi = choice.specimen_px
    assert lo < offset < hi


def test_binned_preview_scales_back(tmp_path) -> None:
    images = project_sum(slab((256, 16, 256), 40), ANGLES) + 10.0
    f = preview_bin_factor(images.shape[1:])
    assert f == 2
    binned = images.reshape(len(ANGLES), 8, 2, 128, 2).mean(axis=(2, 4))
    geometry = bin_geometry(TiltGeometry.single_axis(ANGLES), images.shape[1:], f)
    choice = estimate_thickness(binned, geometry, bin_factor=f, width=256)
    assert 40 <= choice.thickness <= 72


def test_no_specimen_is_refused_naming_the_option() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(ANGLES.size, 32, 128)).astype(np.float32)
    with pytest.raises(ConfigError, match="pass --thickness Z"):
        estimate_thickness(noise, TiltGeometry.single_axis(ANGLES))
    with pytest.raises(TypeError, match="lazy"):
        estimate_thickness(da.from_array(noise), TiltGeometry.single_axis(ANGLES))


def test_choose_prefers_the_user_value() -> None:
    assert choose_thickness(300, None, None, bin_factor=1, width=4096).thickness == 300
    with pytest.raises(ConfigError, match="--thickness must be >= 1"):
        choose_thickness(0, None, None, bin_factor=1, width=4096)
    with pytest.raises(ConfigError, match="pass --thickness"):
        choose_thickness(None, None, None, bin_factor=1, width=4096)


def test_volume_size_and_preview_factor() -> None:
    assert volume_size((300, 4096, 4096)) == "300 x 4096 x 4096 float32 voxels, 18.8 GiB"
    assert volume_size((16, 12, 32), np.int16) == "16 x 12 x 32 int16 voxels, 12.0 KiB"
    assert preview_bin_factor((4096, 5760)) == 45 and preview_bin_factor((100, 120)) == 1
