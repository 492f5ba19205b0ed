"""Which tomograms a command works on, and the compute function pending writes run with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryoflow.errors import ConfigError
from cryoflow.io import store as S
from cryoflow.io.names import validate_name
from cryoflow.pipelines.cluster import compute_with_progress


def select_tomograms(store: Any, name: str | None, all_: bool) -> list[str]:
    """The tomograms a command works on: ``[name]`` or, with ``all_``, every complete one."""
    if bool(name) == bool(all_):
        raise ConfigError("give exactly one of --name TOMO or --all")
    if name:
        return [validate_name(name, "tomogram name")]
    names = S.list_tomograms(store)
    if not names:
        raise ConfigError(f"{store}: the dataset holds no complete tomogram")
    return list(names)


def runner(client: Any, description: str, quiet: bool) -> Callable[[list[Any]], Any]:
    """Compute function for :meth:`PendingWrite.run` on ``client`` with a progress bar."""
    return lambda tasks: compute_with_progress(client, tasks, description, quiet=quiet)
