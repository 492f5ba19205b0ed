"""``cryoflow run`` / ``cryoflow check``: typed config, streaming run, skipping, failures, provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cryoflow.errors import ConfigError
from cryoflow.io.store import open_result, write_tilt_series
from cryoflow.kernels.binning import bin_image
from cryoflow.pipelines.engine.config import load_pipeline, parse_pipeline
from cryoflow.pipelines.engine.run import read_summary, run_pipeline

ANGLES = np.linspace(-60, 60, 8)


def make_dataset(store, n=3, bad=(), seed=0, shape=(8, 32, 32)):
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(n):
        name = f"TS_{i:02d}"
        ts = rng.normal(size=shape).astype(np.float32)
        if name in bad:
            ts[3, 5, 7] = np.nan  # crashes its bin task every time
        write_tilt_series(store, name, ts, ANGLES, 2.5)
        data[name] = ts
    return data


def pipeline(store, steps=None, **cluster):
    return parse_pipeline({
        "dataset": {"store": str(store)},
        "cluster": {"max_in_flight": 2, "retries": 0, **cluster},
        "steps": steps or [{"bin": {"factor": 2}}],
    })


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="2GiB", silence_logs=50) as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dataset": {"store": "x", "stor": 1}, "steps": ["bin"]}, "unknown key 'dataset.stor'; allowed: store, tomograms"),
        ({"dataset": {"store": "x"}, "steps": [{"bim": {}}]}, "unknown step 'bim'; allowed: ingest, simulate, bin"),
        ({"dataset": {"store": "x"}, "steps": [{"bin": {"factr": 2}}]}, "unknown key 'factr'; allowed: factor"),
        ({"dataset": {"store": "x"}, "steps": [{"bin": {"factor": 0}}]}, "greater than or equal to 1"),
        ({"dataset": {"store": "x"}, "cluster": {"max_in_flight": 0}, "steps": ["bin"]}, "cluster.max_in_flight"),
        ({"dataset": {"store": "x"}, "cluster": {"scheduler": "10.0.0.1:8786"}, "steps": ["bin"]}, "tcp://HOST:PORT"),
        ({"dataset": {"store": "x", "tomograms": ["../../etc"]}, "steps": ["bin"]}, "invalid tomogram name '../../etc'"),
        ({"dataset": {"store": "x"}, "steps": ["bin", "bin"]}, "repeated: bin"),
        ({"dataset": {"store": "x"}, "steps": []}, "steps"),
        ({"steps": ["bin"]}, "missing required key 'dataset'"),
    ],
)
def test_bad_config_names_key_and_allowed_values(raw, message):
    with pytest.raises(ConfigError, match=None) as info:
        parse_pipeline(raw, source="P.yaml")
    assert str(info.value).startswith("P.yaml: ")
    assert message in str(info.value)


def test_config_is_frozen_and_paths_resolve(tmp_path):
    path = tmp_path / "sub" / "PIPELINE.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"dataset": {"store": "d.zarr"}, "steps": [{"bin": {"factor": 4}}]}))
    cfg = load_pipeline(path)
    assert cfg.dataset.store == str(tmp_path / "sub" / "d.zarr")
    assert cfg.steps[0].params.factor == 4
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        cfg.steps[0].params.factor = 3
    path.write_text("dataset: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(path)


# ---------------------------------------------------------------------------- running
def test_run_bad_tomogram_fails_alone_and_rerun_skips(tmp_path, client):
    store = tmp_path / "d.zarr"
    data = make_dataset(store, n=4, bad={"TS_02"})
    cfg = pipeline(store)
    summary = run_pipeline(cfg, client, quiet=True)
    assert list(summary.failures) == ["TS_02"]
    assert "non-finite pixels in tilt image(s) [3]" in summary.failures["TS_02"]
    assert summary.steps["bin"].computed == 3 and summary.steps["bin"].failed == 1
    for name, ts in data.items():
        if name == "TS_02":
            continue
        out = open_result(store, name, "bin", "tilt_series")
        assert out.dims == ("tilt", "y", "x")
        np.testing.assert_array_equal(out.values, bin_image(ts, 2))
        prov = out.attrs["provenance"]
        assert prov["step"] == "bin" and prov["parameters"] == {"factor": 2}
        assert set(prov["inputs"]) == {f"tomograms/{name}/tilt_series"}
        assert {"cryoflow_version", "dependencies", "run_token", "run_id"} <= set(prov)
        assert prov["dependencies"]["zarr"] and prov["dependencies"]["dask"]
    stored = read_summary(store)
    assert stored["run_id"] == summary.run_id and stored["failures"]["TS_02"]
    # rerun: complete work skipped, the bad tomogram fails again
    again = run_pipeline(cfg, client, quiet=True)
    assert again.steps["bin"].skipped == 3 and again.steps["bin"].computed == 0
    assert 1 <= again.steps["bin"].chunks < 8  # only the bad tomogram's unrecorded chunks
    assert list(again.failures) == ["TS_02"]
    # no staging or progress leftovers for finished work
    from cryoflow.io.verify import find_leftovers

    left = [x.path for x in find_leftovers(store)]
    assert all("TS_02" in p for p in left), left


def test_changed_parameter_recomputes_only_what_it_affects(tmp_path, client):
    store = tmp_path / "d.zarr"
    data = make_dataset(store, n=2)
    run_pipeline(pipeline(store), client, quiet=True)
    first = {n: open_result(store, n, "bin", "tilt_series").attrs["provenance"]["run_token"] for n in data}
    # only TS_01 is selected with a new factor: TS_00 keeps its result untouched
    cfg = parse_pipeline({"dataset": {"store": str(store), "tomograms": ["TS_01"]},
                          "steps": [{"bin": {"factor": 4}}]})
    summary = run_pipeline(cfg, client, quiet=True)
    assert summary.steps["bin"].computed == 1
    out = open_result(store, "TS_01", "bin", "tilt_series")
    assert out.shape == (8, 8, 8)
    np.testing.assert_array_equal(out.values, bin_image(data["TS_01"], 4))
    assert out.attrs["provenance"]["run_token"] != first["TS_01"]
    assert open_result(store, "TS_00", "bin", "tilt_series").attrs["provenance"]["run_token"] == first["TS_00"]
    # a rewritten input (new write_id) recomputes its results even with the same parameters
    write_tilt_series(store, "TS_00", data["TS_00"] * 2, ANGLES, 2.5, overwrite=True)
    summary = run_pipeline(pipeline(store), client, quiet=True)
    assert summary.steps["bin"].computed == 2  # TS_00 (new input) and TS_01 (factor back to 2)
    np.testing.assert_allclose(open_result(store, "TS_00", "bin", "tilt_series").values,
                               bin_image(data["TS_00"] * 2, 2))


def test_missing_tomogram_is_a_named_failure(tmp_path, client):
    store = tmp_path / "d.zarr"
    make_dataset(store, n=1)
    cfg = parse_pipeline({"dataset": {"store": str(store), "tomograms": ["TS_00", "nope"]},
                          "steps": ["bin"]})
    summary = run_pipeline(cfg, client, quiet=True)
    assert list(summary.failures) == ["nope"]
    assert "NodeNotFoundError" in summary.failures["nope"]
    assert summary.steps["bin"].computed == 1


def test_task_names_say_what_runs_per_tomogram(tmp_path, client):
    from dask.utils import key_split

    store = tmp_path / "d.zarr"
    make_dataset(store, n=1)
    from distributed import get_task_stream

    with get_task_stream(client=client) as stream:
        run_pipeline(pipeline(store), client, quiet=True)
    seen = {key_split(rec["key"]) for rec in stream.data}
    assert "bin:TS_00" in seen  # the write tasks: grouped per tomogram on the dashboard


# ---------------------------------------------------------------------------- CLI
def _write_pipeline(tmp_path, store, steps, **extra):
    path = tmp_path / "PIPELINE.yaml"
    body = {"dataset": {"store": str(store)}, "cluster": {"n_workers": 1, "memory_limit": "1GiB",
            "dashboard": True, "retries": 0}, "steps": steps, **extra}
    path.write_text(yaml.safe_dump(body))
    return path


def test_cli_run_exits_nonzero_naming_bad_tomogram(tmp_path, capsys, client):
    from cryoflow.cli.main import main

    store = tmp_path / "d.zarr"
    make_dataset(store, n=2, bad={"TS_01"})
    # on the test cluster (connect() attaches to it and still writes the performance report)
    body = {"dataset": {"store": str(store)}, "steps": [{"bin": {"factor": 2}}],
            "cluster": {"scheduler": client.scheduler.address, "retries": 0}}
    path = tmp_path / "PIPELINE.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--quiet"])
    assert info.value.code == 1
    out = capsys.readouterr()
    assert "1 tomogram(s) failed: TS_01 (bin: InputFileError" in out.err
    assert "bin" in out.out and "computed" in out.out  # the summary table
    reports = list((tmp_path / "d.zarr.reports").glob("run-*.html"))
    assert len(reports) == 1  # a performance report per run
    assert json.loads(json.dumps(read_summary(store)))["failures"] == {
        "TS_01": read_summary(store)["failures"]["TS_01"]}


def test_cli_check_validates_without_computing(tmp_path, capsys):
    from cryoflow.cli.main import main

    store = tmp_path / "d.zarr"
    make_dataset(store, n=2)
    path = _write_pipeline(tmp_path, store, [{"bin": {"factor": 2}}])
    with pytest.raises(SystemExit) as info:
        main(["check", str(path)])
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "TS_00: tilt series 8 x 32 x 32 float32" in out and "is valid" in out
    assert not any((store / "tomograms" / "TS_00").glob("results"))  # nothing computed
    bad = _write_pipeline(tmp_path, store, [{"bin": {"factor": 64}}])
    with pytest.raises(SystemExit) as info:
        main(["check", str(bad)])
    assert info.value.code == 2
    assert "smaller than bin factor 64" in capsys.readouterr().err
    typo = _write_pipeline(tmp_path, store, [{"bin": {"factor": 2, "fator": 3}}])
    with pytest.raises(SystemExit) as info:
        main(["check", str(typo)])
    assert info.value.code == 2
    assert "unknown key 'fator'; allowed: factor" in capsys.readouterr().err


def test_check_reads_mrc_headers_of_ingest_inputs(tmp_path, capsys):
    import mrcfile

    from cryoflow.cli.main import main

    raw = tmp_path / "raw"
    raw.mkdir()
    with mrcfile.new(raw / "TS_A.mrc") as mrc:
        mrc.set_data(np.zeros((8, 16, 16), np.float32))
    (raw / "TS_A.tlt").write_text("\n".join(str(a) for a in ANGLES))
    path = _write_pipeline(tmp_path, tmp_path / "d.zarr", [{"ingest": {"inputs": "raw/*.mrc"}}, "bin"])
    with pytest.raises(SystemExit) as info:
        main(["check", str(path)])
    assert info.value.code in (0, None)
    assert "TS_A.mrc: MRC 8 x 16 x 16, mode 2" in capsys.readouterr().out
    # a truncated file is reported, naming it
    data = (raw / "TS_A.mrc").read_bytes()
    (raw / "TS_B.mrc").write_bytes(data[: len(data) - 100])
    with pytest.raises(SystemExit) as info:
        main(["check", str(path)])
    assert info.value.code == 2
    assert "TS_B.mrc" in capsys.readouterr().err


def test_ingest_step_then_bin(tmp_path, client):
    import mrcfile

    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(3)
    stacks = {}
    for name in ("TS_A", "TS_B"):
        stacks[name] = rng.normal(size=(8, 16, 16)).astype(np.float32)
        with mrcfile.new(raw / f"{name}.mrc") as mrc:
            mrc.set_data(stacks[name])
        (raw / f"{name}.tlt").write_text("\n".join(str(a) for a in ANGLES))
    (raw / "TS_C.mrc").write_bytes(b"\0" * 2000)  # not an MRC: fails alone
    path = _write_pipeline(tmp_path, tmp_path / "d.zarr", [{"ingest": {"inputs": "raw/*.mrc"}}, "bin"])
    cfg = load_pipeline(path)
    summary = run_pipeline(cfg, client, quiet=True)
    assert list(summary.failures) == ["TS_C"] and summary.failures["TS_C"].startswith("ingest:")
    assert summary.steps["ingest"].computed == 2 and summary.steps["bin"].computed == 2
    for name, ts in stacks.items():
        np.testing.assert_array_equal(open_result(cfg.dataset.store, name, "bin", "tilt_series").values,
                                      bin_image(ts, 2))
    again = run_pipeline(cfg, client, quiet=True)
    assert again.steps["ingest"].skipped == 2 and again.steps["bin"].skipped == 2


def test_bin_then_reconstruct_chain(tmp_path, client):
    import cryoflow

    store = tmp_path / "d.zarr"
    data = make_dataset(store, n=2, shape=(8, 32, 32))
    plain = {"filter": "none", "interpolation": "nearest"}  # the contract's plain backproject
    steps = [{"bin": {"factor": 2}},
             {"reconstruct": {"source": "bin", "thickness": 16, "chunk": 8, **plain}}]
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.ok, summary.failures
    assert summary.steps["reconstruct"].computed == 2
    for name, ts in data.items():
        vol = open_result(store, name, "reconstruct", "volume")
        assert vol.dims == ("z", "y", "x") and vol.shape == (16, 16, 16)
        expected = np.asarray(cryoflow.backproject(bin_image(ts, 2), ANGLES, (16, 16, 16)))
        np.testing.assert_allclose(vol.values, expected, rtol=1e-5, atol=1e-5)
        inputs = vol.attrs["provenance"]["inputs"]
        assert list(inputs) == [f"tomograms/{name}/results/bin/tilt_series"]
    # a new bin factor changes bin's result, so reconstruct (its consumer) recomputes too
    steps[0] = {"bin": {"factor": 4}}
    steps[1] = {"reconstruct": {"source": "bin", "thickness": 16, "chunk": 8, **plain}}
    summary = run_pipeline(pipeline(store, steps), client, quiet=True)
    assert summary.steps["bin"].computed == 2 and summary.steps["reconstruct"].computed == 2
    assert open_result(store, "TS_00", "reconstruct", "volume").shape == (16, 8, 8)
