"""The conformation autoencoder end to end on a tiny hinge phantom: training, per-batch
embedding, wedge invariance, checkpoints, classes, decoded trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import CheckpointError, ConfigError
from cryoflow.kernels.latent_classes import class_accuracy, classify_latent
from cryoflow.kernels.reference_frame import reference_frame_spectra
from cryoflow.models.checkpoint import load_checkpoint
from cryoflow.models.conformation_ae import ConformationAE
from cryoflow.models.embed import as_embedder, decode_latent, embed_batch, save_embedding
from cryoflow.models.embed_fit import fit_embedding
from cryoflow.models.embed_train import EmbedTrainParams, TrainedEmbedding
from cryoflow.models.loader import ModelHandle
from cryoflow.models.trajectory import latent_trajectory
from cryoflow.simulate.subtomo import SubtomoSet
from tests._hinge_embed import BOX, assert_two_wedges_land_together
from tests._hinge_embed import hinge_sim as _sim


def _band(box: int, cut: float) -> np.ndarray:
    k = np.meshgrid(np.fft.fftfreq(box), np.fft.fftfreq(box), np.fft.rfftfreq(box), indexing="ij")
    r = np.sqrt(sum(g**2 for g in k))
    return (r > 0) & (r <= cut)


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedEmbedding, SubtomoSet]:
    torch.set_num_threads(1)
    sim = _sim(32, seed=11)
    params = EmbedTrainParams(latent_dim=3, base_channels=4, steps=60, batch_size=8, lr=3e-3)
    model, _ = fit_embedding(
        sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges, params, resolution_px=4.0
    )
    return model, sim


def test_latent_separates_conformations(trained: tuple[TrainedEmbedding, SubtomoSet]) -> None:
    model, sim = trained
    assert model.frame.work_box == 16
    assert np.mean(model.history[-10:]) < np.mean(model.history[:10])
    z = embed_batch(model, sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    assert z.shape == (32, 3) and z.dtype == np.float32
    labels = classify_latent(z, classes=2).labels
    assert class_accuracy(labels, sim.labels) >= 0.9


def test_embedding_is_per_batch(trained: tuple[TrainedEmbedding, SubtomoSet]) -> None:
    model, sim = trained
    args = (sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    whole = embed_batch(model, *args)
    parts = np.concatenate(
        [embed_batch(model, *(a[s : s + 5] for a in args)) for s in range(0, 32, 5)]
    )
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    assert embed_batch(model, *(a[:0] for a in args)).shape == (0, 3)


def test_one_particle_through_two_wedges_lands_on_one_point(
    trained: tuple[TrainedEmbedding, SubtomoSet],
) -> None:
    assert_two_wedges_land_together(trained[0])


def test_checkpoint_round_trip_through_a_handle(
    trained: tuple[TrainedEmbedding, SubtomoSet], tmp_path: object
) -> None:
    model, sim = trained
    digest = save_embedding(tmp_path, model)  # type: ignore[arg-type]
    handle = ModelHandle.from_directory(tmp_path)  # type: ignore[arg-type]
    assert handle.sha256 == digest
    args = (sim.volumes[:6], sim.euler_deg[:6], sim.shifts_zyx_px[:6], sim.tilt_ranges[:6])
    np.testing.assert_allclose(embed_batch(handle, *args), embed_batch(model, *args), atol=1e-6)
    net, config, _ = load_checkpoint(tmp_path)  # type: ignore[arg-type]
    assert isinstance(net, ConformationAE) and config.feature == "conformation"
    assert torch.equal(net.average, model.model.average)
    assert as_embedder(handle).frame == model.frame


def test_decoded_trajectory_fills_the_wedge(trained: tuple[TrainedEmbedding, SubtomoSet]) -> None:
    model, sim = trained
    z = embed_batch(model, sim.volumes, sim.euler_deg, sim.shifts_zyx_px, sim.tilt_ranges)
    traj = latent_trajectory(model, z, n_axes=2, n_steps=5)
    assert traj.volumes.shape == (2, 5, BOX, BOX, BOX)
    assert traj.points.shape == (2, 5, 3)
    # the two ends of the first axis look like the two poses, in either order
    ends = traj.volumes[0, [0, -1]].reshape(2, -1)
    cc = np.corrcoef(ends, sim.truth.reshape(2, -1))[:2, 2:]
    assert max(cc[0, 0] + cc[1, 1], cc[0, 1] + cc[1, 0]) > 2 * 0.8
    # decoded maps are complete: where a particle measured nothing, its decoded map still
    # matches its pose's truth (the other particles' wedges filled it)
    i = 0
    fs = reference_frame_spectra(
        sim.volumes[:1], sim.euler_deg[:1], sim.shifts_zyx_px[:1], sim.tilt_ranges[:1]
    )
    unseen = (fs.wedges[0].numpy() == 0) & _band(BOX, 0.2)
    dec = np.fft.rfftn(np.fft.ifftshift(decode_latent(model, z[i : i + 1])[0]))
    tru = np.fft.rfftn(np.fft.ifftshift(sim.truth[sim.labels[i]]))
    cc = np.real(np.vdot(tru[unseen], dec[unseen])) / np.sqrt(
        np.vdot(tru[unseen], tru[unseen]).real * np.vdot(dec[unseen], dec[unseen]).real
    )
    assert cc > 0.8, cc
    with pytest.raises(CheckpointError):
        decode_latent(model, np.zeros((2, 5)))


def test_training_refuses_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="latent_dim"):
        EmbedTrainParams(latent_dim=1)
    with pytest.raises(ConfigError, match="batch_size"):
        EmbedTrainParams(batch_size=1)
