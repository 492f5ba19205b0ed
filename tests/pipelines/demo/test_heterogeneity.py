"""The demo's heterogeneity stages at tiny sizes on a real LocalCluster (worker processes):
every figure is finite, the pictures are drawn, and multiref separates the two conformations
far better than chance (0.5)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from cryoflow.pipelines.demo import heterogeneity as H
from cryoflow.pipelines.demo import heterogeneity_motion as HM
from cryoflow.pipelines.demo.context import DemoConfig, DemoContext
from cryoflow.pipelines.demo.report import Report
from cryoflow.pipelines.demo.stages import STAGES

#: smaller than ``--quick``: a few training steps, one body round on a dozen hinges
TINY = dataclasses.replace(H.SIZES[True], embed_steps=8, hinge_n=9, hinge_rounds=1)

FIGURES = (
    "class_accuracy",
    "pca_class_accuracy",
    "kmeans_raw_class_accuracy",
    "embed_class_accuracy",
    "multibody_angle_error_deg",
    "multibody_fixed_body_error_deg",
    "multibody_consensus_arm_error_deg",
)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


# slow: ~33 s (average, classify, embed, multibody on a cluster); CI runs it in its second step
@pytest.mark.slow
def test_heterogeneity_stages_report_finite_figures(tmp_path, client) -> None:
    ctx = DemoContext(
        DemoConfig(out=tmp_path, quick=True), client, tmp_path / "d.zarr", Report("t")
    )
    ctx.state["hetero_sizes"] = TINY
    for stage in (
        H.stage_hetero_average,
        H.stage_hetero_classify,
        HM.stage_hetero_embed,
        HM.stage_hetero_multibody,
    ):
        stage(ctx)
    for name in FIGURES:
        assert math.isfinite(ctx.metrics.get(name, math.nan)), (name, ctx.metrics)
    # the tiny sizes store the simulator's poses (as --quick does), and say so
    assert "hetero_consensus_angle_error_deg" not in ctx.metrics
    assert "true orientations" in "".join(ctx.report.sections)
    for name in ("class_accuracy", "pca_class_accuracy", "embed_class_accuracy"):
        assert 0.5 <= ctx.metrics[name] <= 1.0, (name, ctx.metrics[name])
    assert ctx.metrics["class_accuracy"] >= 0.8, ctx.metrics
    assert ctx.metrics["multibody_angle_error_deg"] >= 0.0
    html = "".join(ctx.report.sections)
    assert html.count("<img") >= 5  # PCA, class averages, latent, trajectory, motions
    assert "load average" in html
    for sub in ("classify_pca/pca.csv", "embed/latent.csv"):
        assert (tmp_path / "heterogeneity" / sub).is_file(), sub
    assert (tmp_path / "heterogeneity" / "multibody" / "body_2.mrc").is_file()


def test_the_demo_runs_the_heterogeneity_stages_last() -> None:
    names = [name for name, _ in STAGES]
    assert names[-4:] == ["hetero_average", "hetero_classify", "hetero_embed", "hetero_multibody"]


def test_a_stage_without_the_simulated_set_says_so(tmp_path) -> None:
    ctx = DemoContext(DemoConfig(out=tmp_path), None, tmp_path / "d.zarr", Report("t"))
    with pytest.raises(RuntimeError, match="hetero_average did not run"):
        H.stage_hetero_classify(ctx)
