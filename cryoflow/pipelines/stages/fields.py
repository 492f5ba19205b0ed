"""Field types and validators the stages' parameter models share.

A field's default is given where the field is declared (``chunk: Chunk = 64``); the type
carries the constraint, the check and the help text::

    class MyParams(StageParams):
        classes: Classes = ()
        thickness: Thickness = None
        filter: Annotated[str, choice(lambda: FILTERS)] = "ramp"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

from cryoflow.io.names import NAME_RULE, is_valid_name, validate_name

__all__ = [
    "Chunk",
    "ClassCount",
    "Classes",
    "Device",
    "StepKey",
    "Texts",
    "Thickness",
    "Threshold",
    "VolumeKey",
    "check_device",
    "choice",
    "is_step_key",
    "one_of",
    "relative_to",
]


def choice(allowed: Callable[[], Sequence[str]]) -> Any:
    """A text field that must be one of ``allowed()`` (a callable, so that the list may live in
    a module imported only when a value is checked)::

        filter: Annotated[str, choice(lambda: FILTERS)] = "ramp"
    """
    return AfterValidator(lambda v: one_of(v, allowed()))


def _texts(value: Any) -> Any:
    """One path or text, or several, as a tuple of str."""
    if isinstance(value, str | Path):
        return (str(value),)
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else value


def _class_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for c in value:
        if not is_valid_name(f"class_{c}"):  # class names become parts of result keys
            raise ValueError(f"invalid class name {c!r}: {NAME_RULE}")
    if len(set(value)) != len(value):
        raise ValueError(f"classes must be unique, got {list(value)}")
    return value


def is_step_key(value: str) -> bool:
    """Whether ``value`` is ``STEP/KEY`` of a result (both on the store's name allow-list)."""
    parts = str(value).split("/")
    return len(parts) == 2 and all(is_valid_name(p) for p in parts)


def _volume_key(value: str) -> str:
    return validate_name(value, "volume key")


def _step_key(value: str, info: ValidationInfo) -> str:
    if not is_step_key(value):
        raise ValueError(f"{info.field_name} must be STEP/KEY, e.g. truth/masks2d, got {value!r}")
    return value


#: the shared field types of stage parameters (a field's default is given where it is used)
StepKey = Annotated[str, AfterValidator(_step_key)]
Texts = Annotated[tuple[str, ...], BeforeValidator(_texts)]
Classes = Annotated[tuple[str, ...], AfterValidator(_class_names)]
Thickness = Annotated[int | None, Field(ge=1, description="volume depth Z (voxels)")]
Chunk = Annotated[int, Field(ge=8, description="output chunk edge in voxels")]
Threshold = Annotated[
    float | None, Field(ge=0, description="fixed T in votes > T (default: Algorithm 1's search)")
]
#: a volume of the tomogram (``volumes/<key>``), on the store's name allow-list
VolumeKey = Annotated[str, AfterValidator(_volume_key)]


def check_device(value: str) -> str:
    """A torch device name a stage accepts: ``cpu``, ``cuda`` or ``cuda:N``."""
    if not (value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {value!r}")
    return value


#: a torch device name a stage accepts (:func:`check_device`)
Device = Annotated[str, AfterValidator(check_device)]


def one_of(value: str, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``, else a ``ValueError`` naming them (for field
    validators of choices defined elsewhere, e.g. :data:`cryoflow.kernels.ramp.FILTERS`)."""
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return value


def _auto_classes(value: Any) -> Any:
    """``"auto"`` (any case) or an empty value: ``None`` (``K`` chosen by BIC)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "")):
        return None
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError(f"give a number of classes K or auto (got {value!r})")
    return value


#: ``--classes K`` (1-64), or ``auto`` / not given: ``None``, ``K`` chosen by BIC
ClassCount = Annotated[Annotated[int, Field(ge=1, le=64)] | None, BeforeValidator(_auto_classes)]


def relative_to(params: Any, base: Path, names: Sequence[str]) -> Any:
    """A copy of ``params`` whose relative path fields ``names`` are made relative to
    ``base`` (a pipeline file's folder; what a model's ``with_base`` returns)."""
    changes = {
        k: str(base / v)
        for k in names
        if (v := getattr(params, k)) is not None and not Path(v).is_absolute()
    }
    return params.model_copy(update=changes) if changes else params
