"""The stable correction: held-out particles, the frozen-anchor phase and the selection rule
(``cryoflow.models.embed_select``), and the wedge contract under the new training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.kernels.conformation_input import band_weights, filled_spectra, network_input
from cryoflow.kernels.fourier_rotate import centred_rfft
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed import embed_batch
from cryoflow.models.embed_fit import fit_embedding
from cryoflow.models.embed_select import MIN_HELD, Selection, holdout_count, split_holdout
from cryoflow.models.embed_train import EmbedTrainParams, TrainedEmbedding
from cryoflow.simulate.subtomo import SubtomoSet
from tests._hinge_embed import assert_two_wedges_land_together
from tests._hinge_embed import hinge_sim as _sim


def _fit(sim: SubtomoSet, **kw: object) -> TrainedEmbedding:
    torch.set_num_threads(1)
    params = EmbedTrainParams(latent_dim=3, base_channels=4, steps=24, batch_size=8, lr=3e-3, **kw)  # type: ignore[arg-type]
    trained, _ = fit_embedding(
        sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges, params, resolution_px=4.0
    )
    return trained


def test_holdout_count_rule() -> None:
    assert holdout_count(64, 0.2) == 13
    assert holdout_count(30, 0.2) == MIN_HELD  # clipped up to the minimum
    assert holdout_count(20, 0.2) == 0  # too few left to train on
    assert holdout_count(100_000, 0.2) == 256
    assert holdout_count(64, 0.0) == 0
    train, held = split_holdout(64, 0.2, seed=3)
    assert len(held) == 13 and len(train) == 51
    assert not set(train) & set(held) and set(train) | set(held) == set(range(64))
    assert np.array_equal(split_holdout(64, 0.2, seed=3)[1], held)


def test_selection_keeps_the_anchor_unless_the_correction_pays() -> None:
    model = ConformationAE(box=8, latent_dim=2, base_channels=2, depth=1)
    rng = np.random.default_rng(0)
    ref = 0.5 + 0.1 * rng.random(20)
    sel = Selection(margin_se=2.0)
    sel.offer(10, ref + 0.01, model, anchored=True)
    sel.offer(20, ref, model, anchored=True)  # the better anchored state: the reference
    assert sel.reference_step == 20
    # lower on average but within the noise of the paired differences: not kept
    noisy = ref + rng.normal(0, 0.05, 20) - 0.005
    sel.offer(30, noisy, model, anchored=False)
    assert sel.record()["selected_step"] == 20 and not sel.record()["correction_kept"]
    # clearly lower on every particle: kept
    sel.offer(40, ref - 0.05 + rng.normal(0, 0.001, 20), model, anchored=False)
    rec = sel.record()
    assert rec["selected_step"] == 40 and rec["correction_kept"]
    assert rec["heldout_selected"] < rec["heldout_reference"]
    assert [s["step"] for s in rec["scores"]] == [10, 20, 30, 40]


@pytest.fixture(scope="module")
def kept_anchor() -> tuple[TrainedEmbedding, SubtomoSet]:
    sim = _sim(32, seed=11)
    # an unreachable margin: the correction can never be kept
    return _fit(sim, margin_se=1e9), sim


def test_a_rejected_correction_leaves_exactly_the_anchor(
    kept_anchor: tuple[TrainedEmbedding, SubtomoSet],
) -> None:
    trained, sim = kept_anchor
    sel = trained.config.params["selection"]
    assert trained.config.training_set["n_held_out"] == MIN_HELD
    assert len(trained.history) == 24 and not sel["correction_kept"]
    assert sel["selected_step"] == sel["reference_step"] <= 12  # inside the frozen half
    m = trained.model
    from cryoflow.kernels.conformation_input import prepare_batch

    prep = prepare_batch(
        sim.volumes,
        sim.euler_deg,
        sim.shifts_zyx_px,
        sim.tilt_ranges,
        trained.frame,
        m.average.numpy(),
    )
    a_spec = centred_rfft(m.average[None])[0]
    x = network_input(
        filled_spectra(prep.targets, prep.wedges, a_spec), band_weights(trained.frame), m.mask
    )
    with torch.no_grad():
        linear, correction = m.encode_parts(x)
    assert float(correction.abs().max()) == 0.0  # the frozen, zero-started correction
    z = embed_batch(trained, sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    np.testing.assert_allclose(z, linear.numpy(), rtol=1e-4, atol=1e-4)


def test_one_particle_through_two_wedges_lands_near_one_point() -> None:
    assert_two_wedges_land_together(_fit(_sim(32, seed=11), margin_se=0.0))
