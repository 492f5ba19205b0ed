"""The missing-wedge training loop as an object that can stop after any step and resume.

:class:`DewedgeTrainer` holds everything a training changes: the network, the optimiser and
its learning-rate schedule, the batch generator's random state, the pool of boxes (the raw
targets and the inputs that wedge updates have changed) and the losses so far. It trains up
to a given step (:meth:`~DewedgeTrainer.run_until`), and its state, less the network's
weights, is one blob of bytes (:meth:`~DewedgeTrainer.resume_bytes`; tensors, numbers and
strings only, so it loads with ``torch.load(weights_only=True)``). Restoring weights and blob
(:meth:`~DewedgeTrainer.restore`) and training on gives exactly the network an uninterrupted
training gives: the same batches, the same optimiser steps (tested bit for bit).

The steps themselves are those of :mod:`cryoflow.models.dewedge_train` (its module docstring
names them); ``docs/design/dewedge.md`` names every choice.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cryoflow.errors import CheckpointError, TrainingError
from cryoflow.models.dewedge_batches import TrainingBatches
from cryoflow.models.dewedge_loss import masked_fourier_loss
from cryoflow.models.dewedge_sampling import BoxPool, WedgeTomogram, build_pool
from cryoflow.models.unet3d import UNet3D

if TYPE_CHECKING:
    from cryoflow.models.dewedge_train import DewedgeTrainConfig

#: gradient norm above which a step is scaled down (typical norms on standardised tomograms
#: are 0.02-0.45; rare larger ones made wider and deeper networks diverge)
CLIP_NORM = 0.5
#: what :meth:`DewedgeTrainer.resume_bytes` holds besides tensors (format marker)
RESUME_FORMAT = "cryoflow-dewedge-resume-1"


def _schedule(config: DewedgeTrainConfig) -> Callable[[int], float]:
    """Learning-rate factor of step ``s``: a linear warm-up over the first 5% of the steps,
    then a cosine decay to a tenth at ``config.steps``."""
    warm = max(1, config.steps // 20)

    def factor(s: int) -> float:
        cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * min(s / config.steps, 1.0)))
        return min(1.0, (s + 1) / warm) * cosine

    return factor


class DewedgeTrainer:
    """One training in progress (see the module docstring).

    ``tomograms`` records, per training tomogram, ``name``, ``tilt_range_deg``, ``halves``
    and ``normalisation`` (the checkpoint's ``training_set``); ``extra`` is carried through
    a resume unchanged (e.g. why halves were or were not used).
    """

    def __init__(
        self,
        config: DewedgeTrainConfig,
        pool: BoxPool,
        tomograms: list[dict[str, Any]],
        device: str | torch.device = "cpu",
        *,
        rng: np.random.Generator,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.device = config, torch.device(device)
        self.tomograms, self.extra = tomograms, dict(extra or {})
        self.pool = pool
        self.batches = TrainingBatches(
            pool, config, [bool(t["halves"]) for t in tomograms], rng, self.device
        )
        self.model = UNet3D(config.base_channels, config.depth).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _schedule(config))
        self.losses: list[float] = []
        self.seconds = 0.0

    # ------------------------------------------------------------------ start, run
    @classmethod
    def start(
        cls,
        binned: Sequence[WedgeTomogram],
        stats: Sequence[tuple[float, float]],
        config: DewedgeTrainConfig,
        *,
        device: str | torch.device = "cpu",
        extra: dict[str, Any] | None = None,
    ) -> DewedgeTrainer:
        """A new training on standardised, binned tomograms (``stats``: each one's
        ``(mean, std)`` before that): the pool drawn, the network initialised (seeded)."""
        from cryoflow.models.dewedge_rotate import extraction_size
        from cryoflow.models.dewedge_train import check_fits

        t0 = time.perf_counter()
        rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        for t in binned:
            check_fits(t.name, t.volume.shape, config)
        pool = build_pool(
            binned,
            extraction_size(config.box, config.rotations),
            config.boxes_per_tomogram,
            rng,
            sigma_px=config.sigma_px,
            quiet_fraction=config.quiet_fraction,
            standardise=False,
        )
        records = [
            {
                "name": t.name,
                "tilt_range_deg": list(t.tilt_range_deg),
                "halves": t.partner is not None,
                "normalisation": list(sa),
            }
            for t, sa in zip(binned, stats, strict=True)
        ]
        trainer = cls(config, pool, records, device, rng=rng, extra=extra)
        trainer.seconds = time.perf_counter() - t0
        return trainer

    @property
    def step(self) -> int:
        """Optimiser steps done."""
        return len(self.losses)

    def run_until(self, stop: int, progress: Callable[[int, float], None] | None = None) -> None:
        """Train from :attr:`step` up to ``min(stop, config.steps)`` steps."""
        cfg, model = self.config, self.model
        t0 = time.perf_counter()
        for step in range(self.step, min(int(stop), cfg.steps)):
            model.train()
            x, y, w = self.batches.draw()
            loss = masked_fourier_loss(model(x), y, w)
            if not bool(torch.isfinite(loss)):
                raise TrainingError(
                    f"missing-wedge training diverged at step {step} (loss {float(loss)}); "
                    f"try a lower learning_rate than {cfg.learning_rate}"
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            self.opt.step()
            self.sched.step()
            self.losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, self.losses[-1])
            if cfg.update_every and (step + 1) % cfg.update_every == 0 and step + 1 < cfg.steps:
                model.eval()
                self.batches.update_wedges(model)
        model.eval()
        self.seconds += time.perf_counter() - t0

    # ------------------------------------------------------------------ resume
    def resume_bytes(self) -> bytes:
        """Everything but the network's weights, as ``torch.save`` bytes (module docstring)."""
        b = self.batches
        meta = {
            "format": RESUME_FORMAT,
            "config": self.config.to_dict(),
            "tomograms": self.tomograms,
            "extra": self.extra,
            "tilt_ranges_deg": [list(r) for r in self.pool.tilt_ranges_deg],
            "rng": b.rng.bit_generator.state,
            "seconds": self.seconds,
        }
        blob = {
            "meta": json.dumps(meta, sort_keys=True),
            "optimizer": self.opt.state_dict(),
            "schedule": self.sched.state_dict(),
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "inputs": [torch.from_numpy(np.ascontiguousarray(a)) for a in b.inputs],
            "targets": [torch.from_numpy(np.ascontiguousarray(a)) for a in b.targets],
            "tomogram": torch.from_numpy(np.asarray(self.pool.tomogram, dtype=np.int64)),
            "centres": torch.from_numpy(np.asarray(self.pool.centres, dtype=np.int64)),
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def restore(
        cls, weights: bytes, resume: bytes, *, device: str | torch.device = "cpu"
    ) -> DewedgeTrainer:
        """The training whose network is ``weights`` (``weights.pt`` bytes) and whose other
        state is ``resume`` (:meth:`resume_bytes`), ready to :meth:`run_until` on."""
        from cryoflow.models.dewedge_train import DewedgeTrainConfig

        try:
            blob = torch.load(io.BytesIO(resume), map_location="cpu", weights_only=True)
            meta = json.loads(blob["meta"])
            state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable record is one error
            raise CheckpointError(f"unreadable missing-wedge training record: {exc}") from exc
        if meta.get("format") != RESUME_FORMAT:
            raise CheckpointError(
                f"missing-wedge training record of format {meta.get('format')!r}, "
                f"expected {RESUME_FORMAT!r}"
            )
        config = DewedgeTrainConfig.from_dict(meta["config"])
        targets = [t.numpy() for t in blob["targets"]]
        pool = BoxPool(
            first=targets[0],
            second=targets[1],
            tomogram=blob["tomogram"].numpy(),
            tilt_ranges_deg=tuple((float(a), float(b)) for a, b in meta["tilt_ranges_deg"]),
            centres=blob["centres"].numpy(),
        )
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        trainer = cls(config, pool, meta["tomograms"], device, rng=rng, extra=meta["extra"])
        trainer.batches.inputs = [t.numpy().copy() for t in blob["inputs"]]
        trainer.model.load_state_dict(state)
        trainer.opt.load_state_dict(blob["optimizer"])
        trainer.sched.load_state_dict(blob["schedule"])
        trainer.losses = [float(v) for v in blob["losses"].tolist()]
        trainer.seconds = float(meta["seconds"])
        trainer.model.eval()
        return trainer

    def weights_bytes(self) -> bytes:
        """The network's ``state_dict`` as ``weights.pt`` bytes (CPU tensors)."""
        buf = io.BytesIO()
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        torch.save(state, buf)
        return buf.getvalue()
