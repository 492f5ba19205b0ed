"""Self-supervised missing-wedge training: it learns, it saves, it loads safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoflow.errors import ConfigError
from cryoflow.models.checkpoint import load_checkpoint
from cryoflow.models.dewedge_batches import TrainingBatches
from cryoflow.models.dewedge_checkpoint import read_dewedge, save_dewedge
from cryoflow.models.dewedge_loss import masked_fourier_loss
from cryoflow.models.dewedge_predict import apply_network
from cryoflow.models.dewedge_sampling import WedgeTomogram, build_pool, normalisation
from cryoflow.models.dewedge_train import DewedgeTrainConfig, train_dewedge
from cryoflow.models.unet3d import UNet3D
from cryoflow.simulate.dataset import SimulationConfig, simulate_tomogram
from cryoflow.simulate.recon import fbp
from tests._torch_threads import one_torch_thread  # noqa: F401  (autouse fixture)


def _halves(index: int):
    cfg = SimulationConfig.preset("tiny", n_tomograms=2, seed=3)
    s = simulate_tomogram(cfg, index)
    a = fbp(s.tilt_series[0::2], s.angles_deg[0::2], cfg.shape)
    b = fbp(s.tilt_series[1::2], s.angles_deg[1::2], cfg.shape)
    return WedgeTomogram(s.name, (cfg.tilt_min_deg, cfg.tilt_max_deg), a, b), s


SMALL = DewedgeTrainConfig(
    box=16,
    bin_factor=1,
    depth=2,
    boxes_per_tomogram=12,
    steps=40,
    batch_size=2,
    base_channels=4,
    update_every=20,
    learning_rate=3e-3,
)


@pytest.fixture(scope="module")
def trained():
    tomos = [_halves(0)[0], _halves(1)[0]]
    return tomos, train_dewedge(tomos, SMALL)


def _held_out_loss(model: torch.nn.Module, tomos) -> float:
    rng = np.random.default_rng(99)
    pool = build_pool(tomos, 16, 6, rng)
    batches = TrainingBatches(pool, SMALL, [True] * len(tomos), rng, torch.device("cpu"))
    with torch.no_grad():
        return float(
            np.mean(
                [
                    float(masked_fourier_loss(model(x), y, w))
                    for x, y, w in (batches.draw() for _ in range(6))
                ]
            )
        )


def test_training_lowers_the_self_supervised_loss(trained) -> None:
    tomos, result = trained
    assert len(result.losses) == SMALL.steps and np.isfinite(result.losses).all()
    untrained = UNet3D(SMALL.base_channels, SMALL.depth).eval()  # the identity, at the start
    assert _held_out_loss(result.model, tomos) < 0.97 * _held_out_loss(untrained, tomos)


def test_checkpoint_round_trip(trained, tmp_path) -> None:
    tomos, result = trained
    digest = save_dewedge(tmp_path / "m", result)
    model, config, sha = load_checkpoint(tmp_path / "m")  # weights_only=True inside
    assert sha == digest and config.feature == "dewedge" and config.spec.arch == "unet3d"
    settings = read_dewedge(tmp_path / "m")
    assert settings.bin_factor == 1 and settings.multiple == 4 and settings.alignment == 4
    assert settings.tilt_ranges_deg == {t.name: t.tilt_range_deg for t in tomos}
    loc, scale = settings.normalisation[tomos[0].name]
    assert (loc, scale) == pytest.approx(normalisation(tomos[0].volume))
    assert config.params["steps"] == SMALL.steps and config.training_set["boxes"] == 24
    vol = tomos[0].volume
    a = apply_network(result.model, vol, loc=loc, scale=scale)
    b = apply_network(model, vol, loc=loc, scale=scale)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_single_tomogram_without_halves_and_cube_rotation_free_config() -> None:
    tomo, _ = _halves(0)
    single = WedgeTomogram("solo", (-50, 58), tomo.volume)  # an asymmetric range, no halves
    cfg = DewedgeTrainConfig(
        box=8,
        bin_factor=2,
        depth=2,
        boxes_per_tomogram=4,
        steps=3,
        batch_size=2,
        base_channels=2,
        update_every=2,
    )
    result = train_dewedge([single], cfg)
    assert result.config.training_set["tomograms"][0]["halves"] is False
    assert result.config.params["bin_factor"] == 2


def test_tomogram_too_thin_for_the_boxes_is_named() -> None:
    tomo, _ = _halves(0)  # 32 x 64 x 64: binned 2x, 16 voxels thick
    cfg = DewedgeTrainConfig(box=16, bin_factor=2, depth=2, rotations="random", steps=1)
    with pytest.raises(ConfigError, match=r"sim_000.*\(16, 32, 32\).*28-voxel"):
        train_dewedge([tomo], cfg)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("box", 10, "multiple"),
        ("depth", 0, "depth"),
        ("steps", 0, "steps"),
        ("rotations", "euler", "rotations"),
        ("update_every", -1, "update_every"),
        ("bin_factor", 0, "bin_factor"),
    ],
)
def test_bad_settings_refused(field, value, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DewedgeTrainConfig(**{field: value})
    with pytest.raises(ConfigError, match="unknown"):
        DewedgeTrainConfig.from_dict({"boxes": 3})


@pytest.mark.gpu_test
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda() -> None:
    tomo, _ = _halves(0)
    cfg = DewedgeTrainConfig(
        box=16, bin_factor=1, boxes_per_tomogram=4, steps=2, batch_size=2, base_channels=2
    )
    result = train_dewedge([tomo], cfg, device="cuda")
    assert next(result.model.parameters()).is_cuda
