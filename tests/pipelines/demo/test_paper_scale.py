"""The paper preset's additions: validation splits for early stopping, per-stage throughput,
the partial metrics file of a running demo, the demo preset left on fixed steps."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from cryoflow.pipelines.demo.compare import CompareConfig
from cryoflow.pipelines.demo.presets import resolve_preset
from cryoflow.pipelines.demo.throughput import format_rates, rates, stage_work
from cryoflow.pipelines.demo.validation import split_indices, validation_picks


def test_the_paper_preset_stops_on_validation_and_the_demo_on_steps() -> None:
    paper = CompareConfig(**asdict(resolve_preset("paper").training))
    rule = paper.stop_rule(paper.steps)
    assert rule is not None and rule.max_steps == 600 and rule.every == 50 and rule.patience == 4
    assert paper.detector_image_size == 512  # the 512-pixel tilts at full size
    demo = CompareConfig(**asdict(resolve_preset("demo").training))
    assert demo.stop_rule(demo.steps) is None and demo.detector_image_size == 128
    sizes = resolve_preset("paper").sizes()
    assert sizes["cell"] == "neuron" and sizes["pixel_size_angstrom"] == 20.0
    assert resolve_preset("demo").sizes()["cell"] == "default"


def test_held_out_images_never_train_and_the_picks_are_deterministic() -> None:
    fit, held = split_indices(41)
    assert not set(fit) & set(held) and len(fit) + len(held) == 41
    assert list(held) == list(range(2, 41, 4))
    masks = np.zeros((41, 4, 4), bool)
    for k, n in ((6, 5), (14, 9), (30, 1), (38, 16), (22, 3), (10, 2), (18, 2), (34, 7)):
        masks[k].flat[:n] = True
    by_content = validation_picks(held, masks, by_content=True)
    assert list(by_content) == [6, 10, 14, 22, 34, 38]  # the six fullest (10 before 18)
    spaced = validation_picks(held, masks, by_content=False)
    assert len(spaced) == 6 and spaced[0] == 2 and spaced[-1] == 38
    fit4, held4 = split_indices(4)  # too few images to hold any out
    assert list(fit4) == [0, 1, 2, 3] and len(held4) == 0


def test_throughput_counts_the_presets_inputs() -> None:
    sizes = resolve_preset("paper").sizes()
    assert stage_work(sizes, "simulate") == {"tilts": 4 * 41.0, "voxels": 4 * 128 * 512 * 512.0}
    assert stage_work(sizes, "seg3d") == {"tilts": 3 * 41.0}
    assert stage_work(sizes, "compare") == {"images": 3 * (3 * 41 + 128.0)}
    assert stage_work(sizes, "extract") == {}
    per_s = rates(stage_work(sizes, "simulate"), 82.0)
    assert per_s["tilts"] == pytest.approx(2.0)
    assert format_rates(per_s) == f"2 tilts/s, {4 * 128 * 512 * 512 / 82e6:.3g} Mvoxels/s"
    assert rates({"tilts": 5.0}, 0.0) == {}


def test_a_running_demo_keeps_partial_metrics_then_removes_them(tmp_path: Path) -> None:
    from cryoflow.pipelines.cluster.connect import ClusterConfig
    from cryoflow.pipelines.demo import run as R

    out = tmp_path / "demo"
    seen: list[dict] = []

    def first(ctx) -> None:
        ctx.metrics["first_figure"] = 0.25

    def second(ctx) -> None:
        seen.append(json.loads((out / R.PARTIAL).read_text()))
        raise RuntimeError("second stage broke")

    stages = [("simulate", first), ("second", second)]
    original = R.STAGES
    R.STAGES = stages  # type: ignore[assignment]
    try:
        ok = R.run_demo(
            R.DemoConfig(out=out, quick=True, preset="paper"),
            ClusterConfig(n_workers=1, threads_per_worker=1, dashboard=False),
        )
    finally:
        R.STAGES = original
    assert not ok
    (partial,) = seen
    assert partial["metrics"]["first_figure"] == 0.25
    assert [s["stage"] for s in partial["stages"]] == ["simulate"]
    assert "tilts/s" in partial["stages"][0]["throughput"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["first_figure"] == 0.25 and "seconds_second" in metrics
    assert "rate_second" not in " ".join(metrics)  # a failed stage gets no throughput
    assert metrics["rate_simulate_tilts_per_s"] > 0
    assert not (out / R.PARTIAL).exists() and (out / "error-second.txt").exists()


def test_the_comparison_with_early_stopping_says_where_each_detector_stopped(
    tmp_path: Path,
) -> None:
    """compare_routes with ``eval_every``: the detectors stop on their validation split and
    say where; the other feature networks run their fixed steps. (That a stopped training is
    the same for a seed is tested in ``tests/models/test_early_stop.py``.)"""
    from distributed import Client, LocalCluster

    from cryoflow.models.arch import ModelSpec
    from cryoflow.pipelines.demo.compare import compare_routes
    from tests._models_store import write_simulated

    store = tmp_path / "ds.zarr"
    write_simulated(store, "train", seed=1, n_tilts=17)
    write_simulated(store, "test", seed=2, n_tilts=17)
    cfg = CompareConfig(
        features=("granule", "mito_membrane"),
        n_boxes=4,
        n_negative=2,
        box_size=24,
        spec=ModelSpec(arch="unet", base_channels=4),
        steps=6,
        batch_size=2,
        detector_steps=4,
        fasterrcnn=True,
        detector_image_size=48,
        eval_every=2,
        patience=1,
    )
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        m = compare_routes(client, store, "train", "test", cfg)
    for net, top in (("tilts_granule", 6), ("slices", 6), ("fasterrcnn", 4)):
        assert 2 <= m[f"val_best_step_{net}"] <= m[f"val_stopped_at_{net}"] <= top, net
        assert m[f"train_steps_{net}"] == m[f"val_stopped_at_{net}"], net
        assert 0.0 <= m[f"val_best_val_{net}"] <= 1.0, net
    assert "val_best_step_tilts_mito_membrane" not in m  # not a detector: fixed steps
    assert m["train_steps_tilts_mito_membrane"] == 6
    assert 0.0 <= m["seg2d3d_iou"] <= 1.0 and 0.0 <= m["detect_ap50_fasterrcnn"] <= 1.0
