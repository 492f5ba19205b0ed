"""The PCA-anchored latent: starts as the principal coordinates; old checkpoints still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import ConfigError
from cryoflow.kernels.conformation_input import EmbedFrame, band_weights, work_mask
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed_train import EmbedTrainParams, ObjectiveWeights, pca_anchor

B = 8


def _model(seed: int = 0) -> ConformationAE:
    torch.manual_seed(seed)
    return ConformationAE(box=B, latent_dim=3, base_channels=2)


def test_an_anchored_untrained_encoder_is_the_linear_projection() -> None:
    m = _model()
    rng = np.random.default_rng(0)
    mean = torch.as_tensor(rng.normal(size=B**3), dtype=torch.float32)
    axes = torch.as_tensor(rng.normal(size=(3, B**3)), dtype=torch.float32)
    m.set_anchor(mean, axes)
    x = torch.as_tensor(rng.normal(size=(5, 1, B, B, B)), dtype=torch.float32)
    want = (x.flatten(1) - mean) @ axes.T
    torch.testing.assert_close(m.encode(x), want, rtol=1e-5, atol=1e-4)
    with pytest.raises(ConfigError, match="anchor must be"):
        m.set_anchor(mean[:-1], axes)


def test_a_checkpoint_without_an_anchor_loads_with_none() -> None:
    state = _model(1).state_dict()
    old = {k: v for k, v in state.items() if not k.startswith("anchor_")}
    m = _model(2)
    m.load_state_dict(old)  # strict: the missing anchor is filled with zeros
    assert not m.anchor_axes.any() and not m.anchor_mean.any()
    x = torch.randn(2, 1, B, B, B)
    torch.testing.assert_close(m.encode(x), m.to_latent(m.encoder(x).flatten(1)))


def test_pca_anchor_gives_the_first_coordinate_unit_spread_and_orders_the_rest() -> None:
    frame = EmbedFrame(box=B, resolution_px=2.5, mask_radius_px=3.0)
    m = _model(3)
    m.set_frame_arrays(torch.zeros((B,) * 3), torch.as_tensor(work_mask(frame)))
    rng = np.random.default_rng(4)
    shape = (40, B, B, B // 2 + 1)
    targets = torch.as_tensor(
        (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    )
    # one strong direction of variation on top of the noise
    amp = torch.as_tensor(rng.normal(size=(40, 1, 1, 1)) * 5.0, dtype=torch.float32)
    targets = targets + amp * targets[0]
    wedges = torch.ones(shape)
    with torch.no_grad():
        pca_anchor(m, targets, wedges, band_weights(frame))
    from cryoflow.kernels.conformation_input import filled_spectra, network_input
    from cryoflow.kernels.fourier_rotate import centred_rfft

    a_spec = centred_rfft(m.average[None])[0]
    x = network_input(filled_spectra(targets, wedges, a_spec), band_weights(frame), m.mask)
    with torch.no_grad():
        z = m.encode(x)
    sd = z.std(dim=0)
    assert float(sd[0]) == pytest.approx(1.0, rel=1e-3)
    assert float(sd[0]) >= float(sd[1]) >= float(sd[2])


def test_training_params_keep_the_checkpoints_flat_keys() -> None:
    d = EmbedTrainParams(weights=ObjectiveWeights(consistency=2.0)).to_dict()
    assert list(d)[:9] == [
        "latent_dim",
        "base_channels",
        "steps",
        "batch_size",
        "lr",
        "consistency",
        "full_weight",
        "variance",
        "latent_l2",
    ]
    assert d["consistency"] == 2.0 and "weights" not in d and "max_seconds" not in d
    with pytest.raises(ConfigError, match="weights must be >= 0"):
        ObjectiveWeights(variance=-1.0)
    with pytest.raises(ConfigError, match="anchor"):
        EmbedTrainParams(anchor="lda")
