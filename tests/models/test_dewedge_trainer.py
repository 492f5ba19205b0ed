"""A missing-wedge training stopped after any step resumes from its recorded state to exactly
the network an uninterrupted training gives (weights, losses, pool inputs: bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import CheckpointError
from cryoflow.models.dewedge_sampling import WedgeTomogram, normalisation, standardise_and_bin
from cryoflow.models.dewedge_train import DewedgeTrainConfig, finished
from cryoflow.models.dewedge_trainer import DewedgeTrainer
from tests._torch_threads import one_torch_thread  # noqa: F401  (autouse fixture)

CFG = DewedgeTrainConfig(
    box=8, bin_factor=1, depth=2, boxes_per_tomogram=6, steps=14, batch_size=2,
    base_channels=2, update_every=5, seed=4,
)  # fmt: skip


def _tomograms() -> tuple[list[WedgeTomogram], list[tuple[float, float]]]:
    rng = np.random.default_rng(0)
    out, stats = [], []
    for i, halves in enumerate((True, False)):
        a = rng.normal(size=(12, 16, 16)).astype(np.float32)
        b = a + rng.normal(scale=0.5, size=a.shape).astype(np.float32) if halves else None
        sa = normalisation(a)
        out.append(
            WedgeTomogram(
                f"t{i}", (-50.0 - 5 * i, 60.0), standardise_and_bin(a, *sa, 1),
                None if b is None else standardise_and_bin(b, *normalisation(b), 1),
            )
        )  # fmt: skip
        stats.append(sa)
    return out, stats


def _state(trainer: DewedgeTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("stop_after", [1, 5, 9])
def test_a_training_resumed_after_any_step_equals_an_uninterrupted_one(stop_after: int) -> None:
    tomos, stats = _tomograms()
    whole = DewedgeTrainer.start(tomos, stats, CFG)
    whole.run_until(CFG.steps)
    first = DewedgeTrainer.start(tomos, stats, CFG)
    first.run_until(stop_after)
    weights, resume = first.weights_bytes(), first.resume_bytes()
    del first  # only the bytes go on (as through the store)
    again = DewedgeTrainer.restore(weights, resume)
    assert again.step == stop_after
    again.run_until(stop_after + 3)  # a second interruption on the way
    again = DewedgeTrainer.restore(again.weights_bytes(), again.resume_bytes())
    again.run_until(CFG.steps)
    assert again.step == CFG.steps and again.losses == whole.losses
    ref, got = _state(whole), _state(again)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    for a, b in zip(whole.batches.inputs, again.batches.inputs, strict=True):
        np.testing.assert_array_equal(a, b)  # the wedge updates carried over
    rec_a, rec_b = finished(whole).config, finished(again).config
    assert rec_a.training_set == rec_b.training_set and rec_a.params == rec_b.params
    assert rec_b.training_set["tomograms"][1]["halves"] is False


def test_a_corrupt_or_foreign_record_is_refused() -> None:
    tomos, stats = _tomograms()
    trainer = DewedgeTrainer.start(tomos, stats, CFG)
    with pytest.raises(CheckpointError, match="unreadable"):
        DewedgeTrainer.restore(trainer.weights_bytes(), b"not a record")
    import io

    buf = io.BytesIO()
    torch.save({"meta": '{"format": "other"}'}, buf)
    with pytest.raises(CheckpointError, match="format 'other'"):
        DewedgeTrainer.restore(trainer.weights_bytes(), buf.getvalue())
