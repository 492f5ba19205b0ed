"""Typed configuration of a ``PIPELINE.yaml``, parsed once and validated before any work.

A pipeline file looks like::

    dataset:
      store: data/dataset.zarr        # relative paths are relative to the pipeline file
      tomograms: [TS_01, TS_02]       # optional; default: every tomogram in the store
    cluster:
      scheduler: null                 # or tcp://host:8786 / tls://host:8786
      n_workers: 2
      memory_limit: 2GiB
      max_in_flight: 4                # tomograms processed at once
    steps:                            # run in this order, each over every tomogram
      - bin: {factor: 2}
      - reconstruct: {source: bin, thickness: 32}

Every model is frozen and forbids unknown keys; a bad key or value raises
:class:`cryoflow.errors.ConfigError` naming the file, the location, and what is allowed. Each
step's parameters are its stage's own model (``cryoflow.pipelines.stages.<name>``), the one
``cryoflow <name>`` builds from its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cryoflow.errors import ConfigError
from cryoflow.io.names import NAME_RULE, is_valid_name
from cryoflow.pipelines.stages.base import explain, params_validation


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name(value: str, what: str) -> str:
    if not is_valid_name(value):
        raise ValueError(f"invalid {what} {value!r}: {NAME_RULE}")
    return value


# ---------------------------------------------------------------------------- sections
class DatasetConfig(_Frozen):
    """Where the dataset lives and which tomograms to process."""

    store: str = Field(description="Zarr v3 dataset store: a path or fsspec URL")
    tomograms: tuple[str, ...] | None = Field(
        default=None, description="tomogram names; default: every tomogram in the store"
    )

    @field_validator("tomograms")
    @classmethod
    def _names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            for n in v:
                _name(n, "tomogram name")
            if len(set(v)) != len(v):
                raise ValueError("tomogram names must be unique")
        return v


class ClusterSection(_Frozen):
    """How to reach (or start) the Dask cluster, and how much work to keep in flight."""

    scheduler: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "2GiB"
    security: str | None = Field(default=None, description="folder from `cryoflow certs`")
    report: str | None = Field(default=None, description="performance report HTML path")
    dashboard: bool = True
    max_in_flight: int = Field(default=4, ge=1, description="tomograms processed at once")
    retries: int = Field(default=1, ge=0, description="extra attempts for a failing chunk")
    stall_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="fail a tomogram whose step finishes no chunk for this long (seconds); "
        "default: derived from the run (see cryoflow.pipelines.engine.watch)",
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str:
        from cryoflow.pipelines.engine.memory import parse_memory_limit

        parse_memory_limit(v)  # a size, and one a worker can live with
        return v

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(
                f"scheduler must look like tcp://HOST:PORT or tls://HOST:PORT, got {v!r}"
            )
        return v


class StepConfig(_Frozen):
    """One pipeline step: its kind and its typed parameters."""

    name: str
    params: Any

    def param_dict(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")


class PipelineConfig(_Frozen):
    """A whole pipeline file."""

    dataset: DatasetConfig
    cluster: ClusterSection = ClusterSection()
    steps: tuple[StepConfig, ...] = Field(min_length=1)
    source: str | None = Field(default=None, description="the file this was read from")

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, raw: Any) -> Any:
        from cryoflow.pipelines.stages import STAGES, get_stage

        if not isinstance(raw, list | tuple):
            raise ValueError("steps must be a list like [{bin: {factor: 2}}, {reconstruct: {}}]")
        steps = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                item = {item: {}}
            if isinstance(item, StepConfig):
                steps.append(item)
                continue
            if not (isinstance(item, dict) and len(item) == 1):
                raise ValueError(f"step {i} must be one mapping {{name: {{params}}}}, got {item!r}")
            ((name, params),) = item.items()
            if name not in STAGES:
                raise ValueError(f"step {i}: unknown step {name!r}; allowed: {', '.join(STAGES)}")
            model = get_stage(name).params
            try:
                parsed = model.model_validate(params or {})
            except ValidationError as exc:
                why = explain(params_validation(exc), model)
                raise ValueError(f"step {i} ({name}): {why}") from None
            steps.append(StepConfig(name=name, params=parsed))
        return tuple(steps)

    @model_validator(mode="after")
    def _order(self) -> PipelineConfig:
        from cryoflow.pipelines.stages import get_stage

        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"each step may appear once; repeated: {', '.join(dup)}")
        for i, s in enumerate(self.steps):
            stage = get_stage(s.name)
            if stage.unit == "source" and any(get_stage(n).unit != "source" for n in names[:i]):
                raise ValueError(f"{s.name} makes the tomograms: it must come before other steps")
            problem = stage.order(s.params, names[:i], names[i + 1 :]) if stage.order else None
            if problem:
                raise ValueError(problem)
        return self

    def with_base(self, base: Path) -> PipelineConfig:
        """A copy whose steps' relative file paths are relative to ``base``."""
        steps = tuple(StepConfig(name=s.name, params=s.params.with_base(base)) for s in self.steps)
        return self.model_copy(update={"steps": steps})


# ---------------------------------------------------------------------------- parsing
def parse_pipeline(data: Any, *, source: str = "<pipeline>") -> PipelineConfig:
    """Validate a parsed YAML mapping into a :class:`PipelineConfig`.

    Raises
    ------
    ConfigError
        Naming ``source``, each bad key or value, and what is allowed there.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a pipeline file must be a mapping with dataset/cluster/steps")
    try:
        return PipelineConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {explain(exc, PipelineConfig)}") from None


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate ``PIPELINE.yaml``; relative store paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at byte offset "
            f"{exc.start}); save the pipeline file as UTF-8"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
        store = data["dataset"].get("store")
        if isinstance(store, str) and "://" not in store and not Path(store).is_absolute():
            data["dataset"] = {**data["dataset"], "store": str(path.parent / store)}
    return parse_pipeline(data, source=str(path)).with_base(path.parent)
