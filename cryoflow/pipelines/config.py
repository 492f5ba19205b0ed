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
:class:`cryoflow.errors.ConfigError` naming the file, the location, and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cryoflow.errors import ConfigError
from cryoflow.io.names import NAME_RULE, is_valid_name


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

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(
                f"scheduler must look like tcp://HOST:PORT or tls://HOST:PORT, got {v!r}"
            )
        return v


# ---------------------------------------------------------------------------- step params
class IngestParams(_Frozen):
    """Read tilt series (MRC + angle files) into the store; files already ingested are skipped."""

    inputs: str = Field(
        description="glob of MRC files relative to the pipeline file, e.g. raw/*.mrc; "
        "angles come from the .mdoc/.rawtlt/.tlt beside each file"
    )


class SimulateParams(_Frozen):
    """Simulate synthetic cellular tilt series (names taken from ``dataset.tomograms``)."""

    shape: tuple[int, int, int] = (32, 64, 64)
    n_tilts: int = Field(default=41, ge=2)
    tilt_range_deg: float = Field(default=60.0, gt=0, le=90)
    seed: int = 0


class BinParams(_Frozen):
    """Bin each tilt image by an integer factor (mean of ``factor x factor`` pixels)."""

    factor: int = Field(default=2, ge=1, le=64)


class ReconstructParams(_Frozen):
    """Back-project the tilt series (or a binned one) into a volume ``(Z, Y, X)``."""

    source: Literal["tilt_series", "bin"] = "tilt_series"
    thickness: int = Field(default=64, ge=1, description="Z of the volume in voxels")
    chunk: int = Field(default=64, ge=8, description="output chunk edge in voxels")


class LiftParams(_Frozen):
    """2D-to-3D lifting (the paper's Algorithm 1) of 2D masks into 3D."""

    masks: str = Field(default="annotate", description="step whose 2D masks are lifted")
    thresholds: tuple[int, ...] | None = None


class AnnotateParams(_Frozen):
    """Few-shot 2D annotation with a trained network checkpoint."""

    checkpoint: str = Field(description="checkpoint file from `cryoflow train`")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(default=8, ge=1)


STEP_PARAMS: dict[str, type[_Frozen]] = {
    "ingest": IngestParams,
    "simulate": SimulateParams,
    "bin": BinParams,
    "reconstruct": ReconstructParams,
    "lift": LiftParams,
    "annotate": AnnotateParams,
}


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
            if name not in STEP_PARAMS:
                raise ValueError(
                    f"step {i}: unknown step {name!r}; allowed: {', '.join(STEP_PARAMS)}"
                )
            try:
                parsed = STEP_PARAMS[name].model_validate(params or {})
            except ValidationError as exc:
                raise ValueError(f"step {i} ({name}): {_explain(exc, STEP_PARAMS[name])}") from None
            steps.append(StepConfig(name=name, params=parsed))
        return tuple(steps)

    @model_validator(mode="after")
    def _unique_steps(self) -> PipelineConfig:
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"each step may appear once; repeated: {', '.join(dup)}")
        for i, s in enumerate(self.steps):
            if s.name == "reconstruct" and s.params.source == "bin" and "bin" not in names[:i]:
                raise ValueError("reconstruct with source: bin needs a bin step before it")
        return self


# ---------------------------------------------------------------------------- parsing
def _allowed(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _explain(exc: ValidationError, model: type[BaseModel]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(
                f"unknown key {loc!r}; allowed: {_allowed(_model_at(model, err['loc'][:-1]))}"
            )
        elif err["type"] == "missing":
            parts.append(f"missing required key {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, dict | list | tuple) else f" (got {got!r})"
            parts.append(f"{loc}: {msg}{shown}")
    return "; ".join(parts)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return model


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
        raise ConfigError(f"{source}: {_explain(exc, PipelineConfig)}") from None


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate ``PIPELINE.yaml``; relative store paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
        store = data["dataset"].get("store")
        if isinstance(store, str) and "://" not in store and not Path(store).is_absolute():
            data["dataset"] = {**data["dataset"], "store": str(path.parent / store)}
    return parse_pipeline(data, source=str(path))
