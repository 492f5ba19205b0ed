"""The demo's dewedge stage at ``--quick`` sizes on a real local cluster: after the demo's own
simulation, the network is trained on both tiny tomograms, applied, measured against truth,
and the report holds its slices and Fourier transforms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cryoflow.pipelines.demo.context import DemoConfig, DemoContext
from cryoflow.pipelines.demo.dewedge import _log_amplitude, stage_dewedge
from cryoflow.pipelines.demo.report import Report
from cryoflow.pipelines.demo.stages import stage_simulate


# slow: ~28 s (a dewedge training); CI runs it in its second step
@pytest.mark.slow
def test_quick_dewedge_stage_fills_the_wedge(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    kw = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": 50}
    with (
        LocalCluster(n_workers=2, processes=True, host="127.0.0.1", **kw) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        config = DemoConfig(out=tmp_path, quick=True)
        ctx = DemoContext(config, client, tmp_path / "dataset.zarr", Report("demo"))
        stage_simulate(ctx)
        n_figures = len(ctx.report.sections)
        stage_dewedge(ctx)
    m = ctx.metrics
    names = ("wedge_cc", "wedge_cc_before", "cc_after", "cc_before", "z_ratio", "peer_wedge_cc")
    for name in names:
        assert math.isfinite(m[f"dewedge_{name}"]), (name, m)
    # the learned filling puts truth-correlated power into the wedge, and the volume nearer
    # the truth, than the tomogram had (a pipeline that wrote its input back fails both)
    assert m["dewedge_wedge_cc"] > m["dewedge_wedge_cc_before"] + 0.05, m
    assert m["dewedge_cc_after"] > m["dewedge_cc_before"] + 0.05, m
    assert 0.0 < m["dewedge_peer_wedge_cc"] < 1.0
    figures = [s for s in ctx.report.sections[n_figures:] if "<img" in s]
    assert len(figures) == 1 and "base64," in figures[0]


def test_log_amplitude_shows_the_missing_wedge() -> None:
    from cryoflow.kernels.wedge import wedge_mask

    rng = np.random.default_rng(0)
    shape = (32, 32, 32)
    vol = np.fft.ifftn(np.fft.fftn(rng.normal(size=shape)) * wedge_mask(shape, (-50, 50))).real
    fxy, fxz = _log_amplitude(vol)
    assert fxy.shape == (32, 32) and fxz.shape == (32, 32) and np.isfinite(fxz).all()
    # (kz, kx) plane: along kz (beyond the centre) nothing was measured, along kx all of it
    assert fxz[16 + 8, 16] < 1e-3 * fxz[16, 16 + 8]
