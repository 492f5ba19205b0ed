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
    """Simulate synthetic cellular tomograms ``sim_000``, ``sim_001``, ... with ground truth.

    A preset of :mod:`cryoflow.simulate.dataset` with optional overrides (``None`` keeps the
    preset's value). Rerunning with the same settings skips; other settings replace every
    simulated tomogram (so everything computed from them is recomputed).
    """

    preset: Literal["tiny", "demo", "realistic"] = "tiny"
    n_tomograms: int = Field(default=1, ge=1, le=10_000)
    seed: int = Field(default=0, ge=0)
    shape: tuple[int, int, int] | None = Field(default=None, description="(Z, Y, X) voxels")
    tilt_range_deg: tuple[float, float] | None = Field(
        default=None, description="lowest and highest tilt angle, degrees"
    )
    tilt_step_deg: float | None = Field(default=None, gt=0)
    snr: float | None = Field(default=None, gt=0)
    blur: Literal["none", "gaussian", "ctf"] | None = None
    classes: tuple[str, ...] | None = Field(
        default=None, description="foreground classes; default: all of them"
    )
    contrast: Literal["mass", "em"] | None = None
    tilt_axis_deg: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _valid(self) -> SimulateParams:
        self.simulation()  # the simulator's own checks, as a ValueError naming the value
        return self

    def simulation(self) -> Any:
        """The :class:`cryoflow.simulate.dataset.SimulationConfig` these settings describe."""
        from cryoflow.simulate.dataset import SimulationConfig

        overrides: dict[str, Any] = {
            "n_tomograms": self.n_tomograms,
            "seed": self.seed,
            "shape": self.shape,
            "tilt_step_deg": self.tilt_step_deg,
            "snr": self.snr,
            "blur": self.blur,
            "classes": self.classes,
            "contrast": self.contrast,
            "tilt_axis_deg": self.tilt_axis_deg,
        }
        if self.tilt_range_deg is not None:
            overrides["tilt_min_deg"], overrides["tilt_max_deg"] = self.tilt_range_deg
        try:
            return SimulationConfig.preset(
                self.preset, **{k: v for k, v in overrides.items() if v is not None}
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class BinParams(_Frozen):
    """Bin each tilt image by an integer factor (mean of ``factor x factor`` pixels)."""

    factor: int = Field(default=2, ge=1, le=64)


class ReconstructParams(_Frozen):
    """Back-project the tilt series (or a binned one) into a volume ``(Z, Y, X)``."""

    source: Literal["tilt_series", "bin"] = "tilt_series"
    thickness: int = Field(default=64, ge=1, description="Z of the volume in voxels")
    chunk: int = Field(default=64, ge=8, description="output chunk edge in voxels")


class LiftParams(_Frozen):
    """2D-to-3D lifting (the paper's Algorithm 1) of 2D masks into a 3D label volume.

    Reads ``results/<STEP>/<KEY>`` (or ``<KEY>_<class>`` for each of ``classes``) and writes,
    under ``results/lift/``: ``labels`` ``(z, y, x)`` uint8 and per class ``votes_<c>``,
    ``threshold_<c>`` (the chosen ``T``) and the score curve ``thresholds_<c>``/``scores_<c>``.
    """

    masks: str = Field(
        default="truth/masks2d",
        description="STEP/KEY of the 2D masks: truth/masks2d (simulator) or annotate/<feature>",
    )
    classes: tuple[str, ...] = Field(
        default=(), description="classes: masks are read from KEY_<class>; empty: KEY itself"
    )
    threshold: float | None = Field(
        default=None, ge=0, description="fixed T in votes > T; default: Algorithm 1's search"
    )
    thickness: int | None = Field(default=None, ge=1, description="Z of the volume in voxels")
    chunk: int = Field(default=64, ge=8, description="output chunk edge in voxels")

    @field_validator("masks")
    @classmethod
    def _maps(cls, v: str) -> str:
        parts = v.split("/")
        if len(parts) != 2 or not all(is_valid_name(p) for p in parts):
            raise ValueError(f"masks must be STEP/KEY, e.g. truth/masks2d, got {v!r}")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            _name(c, "class name")
        if len(set(v)) != len(v):
            raise ValueError("classes must be unique")
        return v


class EdgesParams(_Frozen):
    """Edge lifting (the paper's Algorithm 2); see :mod:`cryoflow.kernels.edges`.

    Writes, under ``results/edges/``: ``edges2d`` ``(tilt, y, x)``, ``sums`` ``(z, y, x)`` and
    ``labels`` = ``sums > threshold`` (uint8).
    """

    sigma1: float = Field(default=1.0, ge=0)
    sigma2: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)
    denoise: Literal["none", "gaussian", "median"] = "none"
    denoise_size: float = Field(default=1.0, gt=0)
    invert: bool = False
    iterations: int = Field(default=4, ge=0)
    window: int = Field(default=1, ge=1)
    min_support: int = Field(default=2, ge=1)
    threshold: float = 2.0
    thickness: int | None = Field(default=None, ge=1)
    chunk: int = Field(default=64, ge=8)

    @model_validator(mode="after")
    def _sigmas(self) -> EdgesParams:
        if not self.sigma1 < self.sigma2:
            raise ValueError(f"need sigma1 < sigma2, got {self.sigma1}, {self.sigma2}")
        return self


class AnnotateParams(_Frozen):
    """2D annotation of every tilt image with a trained network checkpoint.

    Writes ``results/annotate/<feature>`` ``(tilt, y, x)``: uint8 probabilities 0..255, with
    the model's ``threshold`` in the attributes. The checkpoint's weights hash is part of the
    run token and the provenance, so a retrained model recomputes.
    """

    checkpoint: str = Field(
        description="model directory from `cryoflow train` (relative to the pipeline file)"
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="cuda: inference tasks ask for the Dask resource GPU=1"
    )
    batch_size: int = Field(default=8, ge=1)


class DetectParams(_Frozen):
    """The light 2D detector (boxes around components of ``annotate``'s probability maps).

    Writes ``results/detect/<feature>`` (table ``tilt, class, score, y0, x0, y1, x1``) and
    ``results/detect/<feature>_counts`` ``(tilt,)`` (boxes per tilt).
    """

    feature: str = Field(
        description="the annotate result to detect on (results/annotate/<feature>)"
    )
    threshold: float | None = Field(
        default=None, gt=0, lt=1, description="probability cut; default: the model's threshold"
    )
    min_pixels: int = Field(default=4, ge=1, description="smaller 2D components are dropped")
    batch_size: int = Field(default=8, ge=1, description="tilts per task")

    @field_validator("feature")
    @classmethod
    def _feature(cls, v: str) -> str:
        _name(f"{v}_counts", "feature name")
        return v


class LocalizeParams(_Frozen):
    """Object localisation (the paper's Algorithm 3): 2D boxes per tilt to 3D boxes.

    Per class ``c``, under ``results/localize/``: the box masks' vote map ``votes_<c>``, the
    threshold search (``thresholds_<c>``, ``scores_<c>``, ``threshold_<c>``), the 3D component
    labels ``labels_<c>`` (int32, merged across chunk borders), and one table ``boxes3d`` of
    3D boxes (class, z0, y0, x0, z1, y1, x1, support, label, n_voxels, threshold).
    """

    boxes: str = Field(
        default="truth",
        description="2D boxes: 'truth' (boxes around the simulator's 2D masks), STEP/KEY of a "
        "box table in the store (e.g. detect/granule), or a .csv/.json file (relative to the "
        "pipeline file)",
    )
    classes: tuple[str, ...] = Field(
        default=(), description="classes to localise; empty: every class in the boxes"
    )
    threshold: float | None = Field(
        default=None, ge=0, description="fixed T in votes > T; default: Algorithm 1's search"
    )
    min_score: float = Field(default=0.0, ge=0, description="2D boxes below it are ignored")
    connectivity: int = Field(default=1, ge=1, le=3, description="1 faces, 2 edges, 3 corners")
    min_voxels: int = Field(default=1, ge=1, description="smaller 3D components are dropped")
    jitter_px: float = Field(default=0.0, ge=0, description="with boxes: truth, box jitter")
    seed: int = 0
    thickness: int | None = Field(default=None, ge=1, description="Z of the volume in voxels")
    chunk: int = Field(default=64, ge=8, description="output chunk edge in voxels")

    @field_validator("boxes")
    @classmethod
    def _boxes(cls, v: str) -> str:
        if v == "truth" or v.lower().endswith((".csv", ".json")):
            return v
        parts = v.split("/")
        if len(parts) != 2 or not all(is_valid_name(p) for p in parts):
            raise ValueError(
                f"boxes must be 'truth', STEP/KEY of a stored table or a .csv/.json file, got {v!r}"
            )
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            _name(f"labels_{c}", "class name")
        if len(set(v)) != len(v):
            raise ValueError("classes must be unique")
        return v


STEP_PARAMS: dict[str, type[_Frozen]] = {
    "ingest": IngestParams,
    "simulate": SimulateParams,
    "bin": BinParams,
    "reconstruct": ReconstructParams,
    "annotate": AnnotateParams,
    "lift": LiftParams,
    "edges": EdgesParams,
    "detect": DetectParams,
    "localize": LocalizeParams,
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
            if s.name == "lift":
                source = s.params.masks.split("/")[0]
                if source in names[i:]:
                    raise ValueError(
                        f"lift reads {s.params.masks}: the {source} step must come before it"
                    )
            if s.name in ("ingest", "simulate") and any(
                n not in ("ingest", "simulate") for n in names[:i]
            ):
                raise ValueError(f"{s.name} makes the tomograms: it must come before other steps")
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
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        data["steps"] = [_resolve_checkpoint(item, path.parent) for item in data["steps"]]
    return parse_pipeline(data, source=str(path))


PATH_FIELDS = {"annotate": "checkpoint", "localize": "boxes"}  # paths relative to the file


def _resolve_checkpoint(item: Any, base: Path) -> Any:
    """A step's relative path field (``annotate``'s checkpoint, ``localize``'s box file) made
    relative to the pipeline file."""
    if not isinstance(item, dict) or len(item) != 1:
        return item
    ((step, params),) = item.items()
    field = PATH_FIELDS.get(step)
    if field is None or not isinstance(params, dict):
        return item
    value = params.get(field)
    if not isinstance(value, str) or Path(value).is_absolute():
        return item
    if step == "localize" and not value.lower().endswith((".csv", ".json")):
        return item  # 'truth' or STEP/KEY in the store
    return {step: {**params, field: str(base / value)}}
