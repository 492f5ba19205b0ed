"""``cryoflow embed`` end to end: a real store, a real STAR file, the command line, a local
cluster of worker processes; and ``classify_latent`` (what ``classify --method autoencoder``
calls) on a client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryoflow.io.particles import read_particles
from cryoflow.kernels.latent_classes import class_accuracy
from cryoflow.models.checkpoint import load_checkpoint
from tests.pipelines.stages._embed_phantom import phantom_set

#: a few training steps only: the phantom's two conformations differ strongly
FAST = ["--steps", "30", "--batch-size", "8", "--classes", "2"]


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cryoflow.cli.main", "embed", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_embed_command_writes_latent_csv_classes_and_model(tmp_path) -> None:
    store, truth, star = phantom_set(tmp_path, n=32)
    out = tmp_path / "emb"
    proc = _cli(
        str(store), "--set", "hinges", "--out", str(out), "--latent", "3", "--workers", "2", *FAST
    )
    assert proc.returncode == 0, proc.stderr
    picks = read_particles(star)
    lat = pd.read_csv(out / "latent.csv")
    # the contract's columns, one row per particle, the input coordinates exactly
    assert list(lat.columns) == ["tomogram", "x", "y", "z", "z0", "z1", "z2"]
    assert len(lat) == len(picks) == 32
    assert lat["tomogram"].tolist() == picks["tomogram"].tolist()
    for c in ("x", "y", "z"):
        assert np.array_equal(lat[c].to_numpy(), picks[c].to_numpy())
    assert np.isfinite(lat[["z0", "z1", "z2"]].to_numpy()).all()
    cls = pd.read_csv(out / "classes.csv")
    assert list(cls.columns) == ["tomogram", "x", "y", "z", "class"]
    assert set(cls["class"]) == {1, 2}
    # classes separate the two conformations far better than chance
    assert class_accuracy(cls["class"].to_numpy() - 1, truth) >= 0.85
    back = read_particles(out / "particles.star")
    assert np.array_equal(back["class"].to_numpy(), cls["class"].to_numpy())
    assert np.allclose(
        back[["rot", "tilt", "psi"]].to_numpy(), picks[["rot", "tilt", "psi"]].to_numpy()
    )
    for k in (1, 2):
        with mrcfile.open(out / f"class_{k}.mrc") as m:
            assert m.data.shape == (16, 16, 16) and np.isfinite(m.data).all() and m.data.std() > 0
            assert float(m.voxel_size.x) == pytest.approx(20.0)
    assert (out / "latent.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "trajectory.png").is_file() and len(
        list((out / "trajectory").glob("*.mrc"))
    ) == 14
    record = json.loads((out / "embed.json").read_text())
    _, config, digest = load_checkpoint(out)
    assert digest == record["checkpoint_sha256"] and config.spec.latent_dim == 3
    assert record["inputs"]["aligned"] is True and record["classes"]["k"] == 2
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    # an existing result is not replaced without --overwrite, and nothing is touched
    before = (out / "latent.csv").read_bytes()
    again = _cli(str(store), "--set", "hinges", "--out", str(out), *FAST, timeout=300)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert str(out) in again.stderr and "--overwrite" in again.stderr
    assert (out / "latent.csv").read_bytes() == before


def test_embed_command_names_a_missing_set_before_any_cluster(tmp_path) -> None:
    store, _, _ = phantom_set(tmp_path, n=4)
    proc = _cli(str(store), "--set", "nosuch", "--out", str(tmp_path / "o"), timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nosuch" in proc.stderr and "local cluster" not in proc.stderr
    assert not (tmp_path / "o").exists()
    bad = _cli(
        str(store), "--set", "hinges", "--out", str(tmp_path / "o"), "--latent", "40", timeout=300
    )
    assert bad.returncode != 0 and "--latent" in bad.stderr


@pytest.mark.slow
def test_classify_latent_returns_the_set_table_with_classes(tmp_path) -> None:
    from cryoflow.io.particleset import read_particle_table
    from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
    from cryoflow.pipelines.stages.embed import classify_latent

    store, truth, _ = phantom_set(tmp_path, n=32, seed=3)
    table = read_particle_table(store, "hinges")
    with connect(ClusterConfig(n_workers=1, dashboard=False), quiet=True) as client:
        got = classify_latent(store, "hinges", 2, client=client, steps=30, batch_size=8, latent=2)
    assert len(got) == len(table)
    assert got[["tomogram", "x", "y", "z"]].equals(table[["tomogram", "x", "y", "z"]])
    assert set(got["class"]) == {1, 2}
    order = np.argsort(table["input_index"].to_numpy(), kind="stable")
    assert class_accuracy(got["class"].to_numpy()[order] - 1, truth) >= 0.85


@pytest.mark.gpu_test
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_embed_on_cuda_with_gpu_resources(tmp_path) -> None:
    from cryoflow.pipelines.stages.embed import classify_latent

    store, truth, _ = phantom_set(tmp_path, n=32, seed=3)
    out = tmp_path / "gpu"
    # no client: a local cluster whose workers carry the GPU resource the tasks ask for
    got = classify_latent(store, "hinges", 2, steps=30, batch_size=8, device="cuda", out=out)
    record = json.loads((out / "embed.json").read_text())
    assert record["parameters"]["device"] == "cuda" and set(got["class"]) == {1, 2}
    assert len(pd.read_csv(out / "latent.csv")) == 32
