"""Load a network once per Dask worker: a ``WorkerPlugin`` keyed by the checkpoint hash.

The pipeline registers :class:`ModelPlugin` (it carries only the checkpoint path, its hash and
the device); each worker loads the network in ``setup`` and inference tasks fetch it with
:func:`get_model`, so the network is never pickled into tasks. The state lives in the plugin:
``setup`` makes the plugin findable by name in its process and ``teardown`` withdraws it, so a
task finds the network without asking Distributed for its worker. Where no plugin was set up
(e.g. the threaded scheduler) :func:`get_model` loads into a cache held by the
:class:`ModelHandle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from torch import nn

from cryoflow.models.checkpoint import ModelConfig, checkpoint_hash, load_checkpoint


@dataclass(frozen=True)
class ModelHandle:
    """A small, picklable reference to a checkpoint: what tasks carry instead of the network.

    directory : the model directory (readable from every worker); sha256 : its weights hash;
    device : where to run it (``"cpu"``, ``"cuda"``).
    """

    directory: str
    sha256: str
    device: str = "cpu"
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_directory(cls, directory: str | Path, device: str = "cpu") -> ModelHandle:
        return cls(str(Path(directory).resolve()), checkpoint_hash(directory), device)

    @property
    def plugin_name(self) -> str:
        return f"cryoflow-model-{self.sha256[:16]}-{self.device}"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "sha256": self.sha256, "device": self.device}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_cache", {})


#: the plugins set up in this process, by plugin name (each holds its own network)
_SET_UP: dict[str, ModelPlugin] = {}


class ModelPlugin(WorkerPlugin):
    """Worker plugin that loads one checkpoint per worker in ``setup``.

    Register with ``client.register_plugin(ModelPlugin(handle))``. ``n_loads`` counts loads on
    this worker (tests check it stays 1).
    """

    idempotent = True

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        self.name = handle.plugin_name
        self.model: nn.Module | None = None
        self.config: ModelConfig | None = None
        self.n_loads = 0

    def setup(self, worker: Any) -> None:
        self.model, self.config, _ = load_checkpoint(
            self.handle.directory, device=self.handle.device, expected_hash=self.handle.sha256
        )
        self.n_loads += 1
        _SET_UP[self.name] = self

    def teardown(self, worker: Any) -> None:
        self.model = None
        if _SET_UP.get(self.name) is self:
            del _SET_UP[self.name]

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Nothing to do on task transitions."""


def get_model(handle: ModelHandle) -> tuple[nn.Module, ModelConfig]:
    """The network for ``handle``: from the plugin set up in this process, else from the
    handle's own cache (loaded once per handle)."""
    plugin = _SET_UP.get(handle.plugin_name)
    if plugin is not None and plugin.model is not None and plugin.config is not None:
        return plugin.model, plugin.config
    if "model" not in handle._cache:
        model, config, _ = load_checkpoint(
            handle.directory, device=handle.device, expected_hash=handle.sha256
        )
        handle._cache["model"], handle._cache["config"] = model, config
    return handle._cache["model"], handle._cache["config"]
