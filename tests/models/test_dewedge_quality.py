"""Trained on two small simulated tomograms, the network fills the wedge with the truth's
content (not a copy of its measured neighbours), and denoises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.kernels.wedge_report import filling_figures
from cryoflow.models.dewedge_predict import apply_network
from cryoflow.models.dewedge_sampling import WedgeTomogram, normalisation
from cryoflow.models.dewedge_train import DewedgeTrainConfig, train_dewedge
from cryoflow.simulate.dataset import SimulationConfig, simulate_tomogram
from cryoflow.simulate.recon import fbp


@pytest.mark.slow  # about 15 s of one core
def test_learned_filling_is_real() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = SimulationConfig.preset("tiny", n_tomograms=2, seed=3)
        sims = [simulate_tomogram(cfg, i) for i in range(2)]
        tilt_range = (cfg.tilt_min_deg, cfg.tilt_max_deg)
        tomos = [
            WedgeTomogram(
                s.name,
                tilt_range,
                fbp(s.tilt_series[0::2], s.angles_deg[0::2], cfg.shape),
                fbp(s.tilt_series[1::2], s.angles_deg[1::2], cfg.shape),
            )
            for s in sims
        ]
        train = DewedgeTrainConfig(
            box=16, bin_factor=2, depth=2, steps=300, boxes_per_tomogram=32, update_every=100
        )
        model = train_dewedge(tomos, train).model
        for s in sims:
            loc, scale = normalisation(s.tomogram)
            out = apply_network(model, s.tomogram, loc=loc, scale=scale, bin_factor=2)
            truth = s.phantom.density
            before = filling_figures(s.tomogram, truth, tilt_range, reference=s.tomogram)
            after = filling_figures(out, truth, tilt_range, reference=s.tomogram)
            assert after["wedge_cc"] > before["wedge_cc"] + 0.1
            # deep in the wedge, where no measured neighbour is near, the truth comes back ...
            assert after["wedge_cc_deep"] > before["wedge_cc_deep"] + 0.2
            # ... and it is not a copy of the measured neighbours
            assert after["copy_cc"] < 0.25 < after["wedge_cc_deep"]
            assert after["cc"] > before["cc"] + 0.2
            assert np.isfinite(out).all()
    finally:
        torch.set_num_threads(threads)
