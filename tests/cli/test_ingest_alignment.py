"""``cryoflow ingest --alignment`` end to end: an AreTomo ``.aln`` (with a dark frame) applied to
the raw stack reconstructs as well as the same series pre-aligned (through the CLI)."""

from __future__ import annotations

import numpy as np

from cryoflow.io import store as S
from tests.cli.test_ingest_real_files import cli, scheduler  # noqa: F401  (fixtures)
from tests.io._phantoms import BACKGROUND, corr
from tests.io.test_alignment import ANGLES, SHAPE, aligned, aln_text, rot, warp  # noqa: F401
from tests.io_files import write_mrc, write_tlt


def test_aretomo_alignment_through_the_command_line(tmp_path, cli, aligned) -> None:  # noqa: F811
    vol, images, reference = aligned
    rng = np.random.default_rng(6)
    n = ANGLES.size
    rot_deg = 85.3 + rng.normal(0, 0.3, n)
    t = rng.uniform(-2.5, 2.5, (n, 2))
    raw_kept = [warp(images[i], rot(-rot_deg[i]), -rot(-rot_deg[i]) @ t[i]) for i in range(n)]
    raw = np.stack([np.full_like(images[0], BACKGROUND), *raw_kept]).astype(np.float32)
    write_mrc(tmp_path / "TS_02.mrc", raw, voxel_size=2.0)
    write_tlt(tmp_path / "TS_02.rawtlt", [-62.0, *ANGLES])  # ignored: the .aln has the angles
    rows = [(i, rot_deg[i], t[i, 0], t[i, 1], ANGLES[i]) for i in range(n)]
    (tmp_path / "TS_02.aln").write_text(aln_text(n + 1, [0], rows))
    store = tmp_path / "s.zarr"
    args = ("ingest", tmp_path / "TS_02.mrc", "--out", store)
    code, _, err = cli(*args, "--alignment", tmp_path / "TS_02.aln", "--tilt-axis", 85)
    assert code == 2 and "--tilt-axis and --alignment" in err and not store.exists()
    code, out, err = cli(*args, "--alignment", tmp_path / "TS_02.aln")
    assert code == 0, err
    assert f"{n} tilts of {n + 1} sections" in out and "alignment AreTomo TS_02.aln" in out
    ts = S.open_tilt_series(store, "TS_02")
    assert ts.shape == (n, *raw.shape[1:])
    np.testing.assert_array_equal(ts.values, raw[1:])
    code, _, err = cli("reconstruct", store, "--name", "TS_02", "--thickness", SHAPE[0])
    assert code == 0, err
    out_vol = S.open_volume(store, "TS_02", "tomogram").values
    assert corr(out_vol, reference) > 0.97
    assert abs(corr(out_vol, vol) - corr(reference, vol)) < 0.03
