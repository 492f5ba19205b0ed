"""The picker's candidate search: same scores as the dense map where it scores, zeros elsewhere;
older (dense) checkpoints still load; the search's settings are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import ConfigError
from cryoflow.kernels.invariants import halo
from cryoflow.models.arch import ModelSpec
from cryoflow.models.picknet import PickNet
from cryoflow.models.picktrain import PickTrainParams


def _net(seed: int = 0) -> PickNet:
    torch.manual_seed(seed)
    net = PickNet(ModelSpec(arch="picker", diameter_px=6.0, shells=3, degree=2, hidden=8))
    return net.eval()


def test_candidate_scores_equal_the_dense_map_at_the_candidates() -> None:
    rng = np.random.default_rng(0)
    net = _net()
    h = net.halo
    assert h == halo(net.invariants)
    block = np.pad(rng.normal(size=(14, 15, 16)).astype(np.float32), h)
    dense = net.score_block(block)
    net.candidate_polarity.fill_(1.0)
    net.candidate_threshold.fill_(0.0)
    sparse = net.score_block(block)
    pts = net.candidates(block, h) - h
    assert len(pts) and len(pts) < dense.size  # a part of the block, not all of it
    at = tuple(pts.T)
    assert np.allclose(sparse[at], dense[at], atol=1e-5)
    mask = np.zeros(dense.shape, bool)
    mask[at] = True
    assert np.all(sparse[~mask] == 0)


def test_a_checkpoint_without_the_search_buffers_loads_as_dense() -> None:
    net = _net()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("candidate_")}
    other = _net(1)
    other.candidate_polarity.fill_(1.0)
    other.load_state_dict(state, strict=True)
    assert float(other.candidate_polarity) == 0.0


def test_search_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="search"):
        PickTrainParams(search="sparse")
    with pytest.raises(ConfigError, match="candidate_fraction"):
        PickTrainParams(candidate_fraction=1.5)
