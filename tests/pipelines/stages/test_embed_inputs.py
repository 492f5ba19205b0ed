"""What ``cryoflow embed`` takes from a set's table: orientations, RELION origins, wedges,
half sets, batches; and the output directory's rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryoflow.errors import AlreadyExistsError, ConfigError, GeometryError
from cryoflow.pipelines.stages.embed_inputs import describe, set_inputs
from cryoflow.pipelines.stages.embed_outputs import check_out, input_order, publish, staging_dir


def _table(n: int = 5, **cols: object) -> pd.DataFrame:
    base = {
        "tomogram": ["a"] * n,
        "x": np.arange(n, dtype=float),
        "y": np.ones(n),
        "z": np.ones(n),
        "tilt_min_deg": [-60.0] * n,
        "tilt_max_deg": [50.0] * n,
        "pixel_size_angstrom": [10.0] * n,
    }
    return pd.DataFrame({**base, **cols})


def test_orientations_origins_halves_and_batches_from_the_table() -> None:
    t = _table(
        rot=[10.0, 20, 30, 40, 50],
        tilt=[1.0] * 5,
        psi=[2.0] * 5,
        origin_x_angstrom=[10.0, 0, 0, 0, -20],
        origin_z_angstrom=[0, 0, 30.0, 0, 0],
        half=[2, 1, 2, 1, 7],
    )
    got = set_inputs(None, "s", t, (2, 2, 1))
    assert got.aligned and got.n == 5 and got.bounds == ((0, 2), (2, 4), (4, 5))
    assert np.array_equal(got.euler_deg[:, 0], [10, 20, 30, 40, 50])
    # RELION's origin is the shift that centres the particle: its centre lies at -origin / pixel
    assert np.allclose(got.shifts_zyx_px[0], [0, 0, -1.0]) and np.allclose(
        got.shifts_zyx_px[4], [0, 0, 2.0]
    )
    assert np.allclose(got.shifts_zyx_px[2], [-3.0, 0, 0])
    assert got.halves.tolist() == [1, 0, 1, 0, 0]  # 7 is no half: even/odd row
    assert np.allclose(got.tilt_ranges, [[-60, 50]] * 5) and got.pixel_size_angstrom == 10.0
    e, s, tr, h = got.batch(1)
    assert len(e) == len(s) == len(tr) == len(h) == 2 and e[0, 0] == 30


def test_no_orientations_is_taken_as_aligned_and_said() -> None:
    got = set_inputs(None, "s", _table(), (5,))
    assert not got.aligned and np.array_equal(got.euler_deg, np.zeros((5, 3)))
    assert np.array_equal(got.shifts_zyx_px, np.zeros((5, 3)))
    assert got.halves.tolist() == [0, 1, 0, 1, 0]
    assert "no orientations" in describe(got)["orientations"]


def test_partial_orientations_and_tiny_sets_are_refused() -> None:
    with pytest.raises(ConfigError, match="psi"):
        set_inputs(None, "s", _table(rot=[0.0] * 5, tilt=[0.0] * 5), (5,))
    with pytest.raises(ConfigError, match="1 of 5 particles lack rot, tilt, psi"):
        set_inputs(
            None, "s", _table(rot=[0, 1, np.nan, 3, 4.0], tilt=[0.0] * 5, psi=[0.0] * 5), (5,)
        )
    with pytest.raises(GeometryError, match="at least 2 particles"):
        set_inputs(None, "s", _table(1), (1,))


def test_output_directory_refused_when_not_empty_and_published_whole(tmp_path) -> None:
    out = tmp_path / "emb"
    assert check_out(out, False) == out  # absent: fine
    out.mkdir()
    check_out(out, False)  # empty: fine
    (out / "latent.csv").write_text("old")
    with pytest.raises(AlreadyExistsError, match="--overwrite"):
        check_out(out, False)
    check_out(out, True)
    tmp = staging_dir(out)
    (tmp / "latent.csv").write_text("new")
    publish(tmp, out)
    assert (out / "latent.csv").read_text() == "new" and not tmp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["emb"]


def test_rows_follow_the_input_file() -> None:
    t = _table(4, input_index=[2, 0, 3, 1])
    assert input_order(t).tolist() == [1, 3, 0, 2]


def test_fractional_coordinates_add_their_offset_from_the_box_centre() -> None:
    # extraction starts boxes at whole voxels, rint(coordinate) - B // 2
    t = _table(2, origin_x_angstrom=[10.0, 0.0], box_z0=[-7, -7], box_y0=[-7, -7], box_x0=[-4, -7])
    t["x"] = [3.3, 0.0]
    t["z"] = [1.0, 1.0]
    got = set_inputs(None, "s", t, (2,), box=16)
    assert np.allclose(got.shifts_zyx_px[0], [0.0, 0.0, -1.0 + 3.3 - (-4 + 8)])
    assert np.allclose(got.shifts_zyx_px[1], [0.0, 0.0, -1.0])
