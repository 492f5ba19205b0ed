"""Checkpoints: a ``state_dict`` (``weights.pt``) plus a JSON config (``model.json``).

No pickled code: weights load with ``torch.load(weights_only=True)`` and the network is rebuilt
from the JSON :class:`ModelConfig`. The SHA-256 of ``weights.pt`` is the checkpoint's hash; it
is recorded in ``model.json``, checked on load, and keys per-worker model caches.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cryoflow.errors import CheckpointError, ConfigError
from cryoflow.models.arch import ModelSpec, build_model

WEIGHTS = "weights.pt"
CONFIG = "model.json"
FORMAT = "cryoflow-model/1"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild and use a trained network, as JSON.

    feature : the feature it annotates (e.g. ``"granule"``).
    spec : which network and its size.
    threshold : probability above which a pixel is the feature (chosen on validation boxes).
    training_set : description of the training set (identity hash, boxes, source).
    params : training parameters (steps, batch size, learning rate, seed, device).
    metrics : validation metrics (IoU, loss).
    """

    feature: str
    spec: ModelSpec
    threshold: float = 0.5
    training_set: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 < float(self.threshold) < 1.0):
            raise ConfigError(f"threshold must lie in (0, 1), got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "feature": self.feature,
            "spec": self.spec.to_dict(),
            "threshold": float(self.threshold),
            "training_set": self.training_set,
            "params": self.params,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if data.get("format") != FORMAT:
            raise ConfigError(f"model config format must be {FORMAT!r}, got {data.get('format')!r}")
        return cls(
            feature=str(data["feature"]),
            spec=ModelSpec.from_dict(dict(data["spec"])),
            threshold=float(data.get("threshold", 0.5)),
            training_set=dict(data.get("training_set", {})),
            params=dict(data.get("params", {})),
            metrics={k: float(v) for k, v in dict(data.get("metrics", {})).items()},
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory: str | Path, model: nn.Module, config: ModelConfig) -> str:
    """Write ``weights.pt`` and ``model.json`` into ``directory``; return the checkpoint hash."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, d / WEIGHTS)
    digest = _sha256(d / WEIGHTS)
    record = {**config.to_dict(), "weights_sha256": digest}
    tmp = d / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(d / CONFIG)
    return digest


def checkpoint_hash(directory: str | Path) -> str:
    """The SHA-256 recorded for the checkpoint in ``directory`` (read from ``model.json``)."""
    return str(_read_config_record(Path(directory))["weights_sha256"])


def _read_config_record(d: Path) -> dict[str, Any]:
    cfg = d / CONFIG
    if not cfg.is_file():
        raise CheckpointError(f"{d}: not a cryoflow model directory (no {CONFIG})")
    try:
        record = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg}: unreadable model config: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("weights_sha256"), str):
        raise CheckpointError(f"{cfg}: model config lacks 'weights_sha256'")
    return record


def read_config(directory: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` stored in ``directory``."""
    d = Path(directory)
    record = _read_config_record(d)
    try:
        return ModelConfig.from_dict({k: v for k, v in record.items() if k != "weights_sha256"})
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{d / CONFIG}: malformed model config: {exc}") from exc


def load_checkpoint(
    directory: str | Path, *, device: str | torch.device = "cpu", expected_hash: str | None = None
) -> tuple[nn.Module, ModelConfig, str]:
    """Rebuild the network from ``directory`` in eval mode on ``device``.

    Returns
    -------
    (module, config, sha256)

    Raises
    ------
    CheckpointError
        Missing files, a hash mismatch (tampered or partial file), a file that is not a plain
        tensor ``state_dict`` (refused by ``weights_only=True``), or weights that do not fit.
    """
    d = Path(directory)
    config = read_config(d)
    recorded = checkpoint_hash(d)
    weights = d / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file is missing")
    digest = _sha256(weights)
    if digest != recorded:
        raise CheckpointError(
            f"{weights}: SHA-256 {digest[:12]}... differs from model.json's {recorded[:12]}..."
        )
    if expected_hash is not None and digest != expected_hash:
        raise CheckpointError(
            f"{weights}: SHA-256 {digest[:12]}... is not the expected {expected_hash[:12]}..."
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a safe tensor state_dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights}: expected a dict of tensors, got {type(state).__name__}")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{weights}: tensor {k!r} holds non-finite values")
    model = build_model(config.spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not fit {config.spec.arch}: {exc}") from exc
    model.eval()
    return model.to(device), config, digest
