"""``simulate_dataset`` and ``cryoflow simulate`` on a local cluster: the store holds the truth."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from cryoflow.errors import AlreadyExistsError, NodeNotFoundError
from cryoflow.io import store as S
from cryoflow.io.verify import find_leftovers
from cryoflow.pipelines.stages.simulation import simulate_dataset
from cryoflow.simulate.dataset import SimulationConfig, simulate_tomogram

CFG = SimulationConfig(
    n_tomograms=2,
    shape=(16, 32, 40),
    tilt_min_deg=-45,
    tilt_max_deg=45,
    tilt_step_deg=9,
    seed=11,
    pixel_size_angstrom=25.0,
    contrast="em",
)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=40,
    ) as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c


@pytest.fixture(scope="module")
def simulated(client, tmp_path_factory):
    store = tmp_path_factory.mktemp("sim") / "data.zarr"
    names = simulate_dataset(client, store, CFG, quiet=True)
    return store, names


def test_store_holds_what_the_simulator_made(simulated):
    store, names = simulated
    assert names == ["sim_000", "sim_001"] and S.list_tomograms(store) == names
    for i, name in enumerate(names):
        sim = simulate_tomogram(CFG, i)
        ts = S.open_tilt_series(store, name)
        assert ts.dims == ("tilt", "y", "x") and ts.shape == (11, 32, 40)
        np.testing.assert_allclose(ts["angle"].values, CFG.angles_deg)
        assert ts.attrs["pixel_size_angstrom"] == 25.0
        np.testing.assert_array_equal(np.asarray(ts), sim.tilt_series)
        np.testing.assert_array_equal(S.read_geometry(store, name).angles_deg, CFG.angles_deg)
        labels = S.open_volume(store, name, "truth_labels")
        assert labels.attrs["kind"] == "label"
        np.testing.assert_array_equal(np.asarray(labels), sim.phantom.labels)
        np.testing.assert_array_equal(
            np.asarray(S.open_volume(store, name, "truth_density")), sim.phantom.density
        )
        for c in CFG.classes:
            m = S.open_result(store, name, "truth", f"masks2d_{c}")
            np.testing.assert_array_equal(np.asarray(m) != 0, sim.masks2d[c])
        particles = S.read_table(store, name, "truth", "particles")
        np.testing.assert_allclose(
            particles[["x", "y", "z", "rot", "tilt", "psi"]].to_numpy(),
            sim.phantom.particles[["x", "y", "z", "rot", "tilt", "psi"]],
        )
        assert list(particles["class"].astype(str)) == list(sim.phantom.particles["class"])
        boxes = S.read_table(store, name, "truth", "mito_boxes")
        np.testing.assert_array_equal(boxes.to_numpy(), sim.phantom.mito_boxes.to_numpy())
        tomo = S.open_volume(store, name, "tomogram")
        assert tomo.shape == CFG.shape
        # the reconstruction resembles the truth density, with the images' polarity (em: dense
        # is dark, so the correlation with the mass density is negative)
        r = np.corrcoef(np.asarray(tomo).ravel(), sim.phantom.density.ravel())[0, 1]
        assert CFG.contrast == "em" and r < -0.25
        assert ts.attrs["provenance"]["step"] == "simulate"
        assert ts.attrs["provenance"]["parameters"]["seed"] == 11


def test_existing_tomograms_are_refused_then_replaced(client, simulated):
    store, names = simulated
    with pytest.raises(AlreadyExistsError, match="sim_000, sim_001"):
        simulate_dataset(client, store, CFG, quiet=True)
    one = CFG.with_(n_tomograms=1, snr=None)
    assert simulate_dataset(client, store, one, overwrite=True, quiet=True) == ["sim_000"]
    clean = simulate_tomogram(one, 0).tilt_series
    np.testing.assert_array_equal(np.asarray(S.open_tilt_series(store, "sim_000")), clean)


def test_cli_simulate(client, tmp_path, capsys):
    from cryoflow.cli.main import main

    out = tmp_path / "cli.zarr"
    argv = [
        "simulate",
        "--out",
        str(out),
        "--shape",
        "12",
        "24",
        "24",
        "--tilt-range",
        "-30",
        "30",
        "--tilt-step",
        "10",
        "--seed",
        "3",
        "--snr",
        "2",
        "--n-tomograms",
        "1",
        "--contrast",
        "em",
        "--scheduler",
        client.scheduler.address,
    ]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "simulated 1 tomogram(s) (sim_000): 7 tilts of 24 x 24" in capsys.readouterr().out
    ts = S.open_tilt_series(out, "sim_000")
    np.testing.assert_allclose(ts["angle"].values, [-30, -20, -10, 0, 10, 20, 30])
    assert ts.attrs["provenance"]["parameters"]["contrast"] == "em"
    expected = SimulationConfig.preset(
        "tiny",
        shape=(12, 24, 24),
        tilt_min_deg=-30,
        tilt_max_deg=30,
        tilt_step_deg=10,
        seed=3,
        snr=2.0,
        contrast="em",
    )
    np.testing.assert_array_equal(ts.values, simulate_tomogram(expected, 0).tilt_series)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "sim_000 exist; pass --overwrite" in capsys.readouterr().err


def test_a_failed_truth_write_publishes_nothing(client, tmp_path, monkeypatch):
    """A tomogram appears (listed, readable) only once all of it is written."""
    store = tmp_path / "fault.zarr"
    small = CFG.with_(n_tomograms=1, shape=(8, 16, 16), tilt_step_deg=45.0)
    assert simulate_dataset(client, store, small, quiet=True) == ["sim_000"]
    before = np.asarray(S.open_tilt_series(store, "sim_000"))

    # inject a fault: sim_001's 2D truth masks fail on a worker, after every tilt series
    # (sim_000's replacement included) has been written
    real_write_result = S.write_result

    def failing_write_result(store, name, step, key, data, **kwargs):
        pending = real_write_result(store, name, step, key, data, **kwargs)
        if name == "sim_001" and key == "masks2d_granule":

            def crash() -> None:
                raise OSError("injected: disk full")

            pending.stages.append(lambda: [dask.delayed(crash, pure=False)()])
        return pending

    monkeypatch.setattr(S, "write_result", failing_write_result)
    # (the new settings also rotate the tilt axis: the stored geometry must say so)
    again = small.with_(n_tomograms=2, seed=12, tilt_axis_deg=30.0)
    with pytest.raises(OSError, match="injected"):
        simulate_dataset(client, store, again, overwrite=True, quiet=True)
    # sim_001 never appears; sim_000 is still the old, whole tomogram; no leftovers
    assert S.list_tomograms(store) == ["sim_000"]
    with pytest.raises(NodeNotFoundError):
        S.open_tilt_series(store, "sim_001")
    np.testing.assert_array_equal(np.asarray(S.open_tilt_series(store, "sim_000")), before)
    old = simulate_tomogram(small, 0)
    np.testing.assert_array_equal(
        np.asarray(S.open_volume(store, "sim_000", "truth_labels")), old.phantom.labels
    )
    assert find_leftovers(store) == []

    # without the fault the same call publishes both, whole
    monkeypatch.setattr(S, "write_result", real_write_result)
    assert simulate_dataset(client, store, again, overwrite=True, quiet=True) == [
        "sim_000",
        "sim_001",
    ]
    assert S.list_tomograms(store) == ["sim_000", "sim_001"]
    new = simulate_tomogram(again, 0)
    np.testing.assert_array_equal(np.asarray(S.open_tilt_series(store, "sim_000")), new.tilt_series)
    assert S.read_geometry(store, "sim_000") == again.geometry
    assert S.read_geometry(store, "sim_000").tilt_axis_deg == 30.0
    for c in again.classes:
        S.open_result(store, "sim_001", "truth", f"masks2d_{c}")
    assert find_leftovers(store) == []
