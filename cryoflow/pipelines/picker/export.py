"""Particle files from the picking page: examples, negatives or accepted picks, STAR and CSV.

What is written (``CONTRACT.md``, "Particle files"; columns ``tomogram, x, y, z`` in level-0
voxels, plus ``score`` for picks):

- ``examples``: the positive marks and the accepted picks (the training set's examples);
- ``negatives``: the negative marks and the rejected picks;
- ``picks``: the accepted picks only, with their scores.

Where: without a path, ``STORE/picks/<what>.star`` and ``STORE/picks/<what>.csv`` (a plain
folder inside the store's directory, replaced on every save: it mirrors the store's tables);
with a path ending in ``.star`` or ``.csv``, that one file, refused when it exists unless
``overwrite``. Each file is written under a temporary name beside it and renamed into place,
so no half-written file ever carries the final name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cryoflow.errors import ConfigError, InputFileError
from cryoflow.io.particles import write_particles
from cryoflow.io.tomograms import tomogram_info
from cryoflow.pipelines.picker.marks import MarkStore

__all__ = ["WHAT", "particle_table", "save_particles"]

WHAT = ("examples", "negatives", "picks")
FOLDER = "picks"


def particle_table(marks: MarkStore, names: Sequence[str], what: str) -> pd.DataFrame:
    """The particle table ``what`` (see module docstring) over tomograms ``names``."""
    if what not in WHAT:
        raise ConfigError(f"what to save must be one of {', '.join(WHAT)}; got {what!r}")
    if what != "picks":
        examples, negatives = marks.training_set(names)
        return examples if what == "examples" else negatives
    rows = []
    for name in names:
        picks = marks.read(name, "picks")
        acc = picks.loc[picks["status"] == "accepted", ["x", "y", "z", "score"]]
        rows.append(acc.assign(tomogram=name)[["tomogram", "x", "y", "z", "score"]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["tomogram"])


def _targets(store: object, what: str, path: str | None, overwrite: bool) -> list[Path]:
    if not path:
        if not isinstance(store, str | os.PathLike):
            raise ConfigError("saving inside the store needs a store on disk; give a path")
        folder = Path(store) / FOLDER
        return [folder / f"{what}.star", folder / f"{what}.csv"]
    target = Path(path).expanduser()
    if target.suffix.lower() not in (".star", ".csv"):
        raise InputFileError(target, "particle files from the picker end in .star or .csv")
    if target.exists() and not overwrite:
        raise InputFileError(target, "exists; tick 'overwrite' to replace it")
    return [target]


def save_particles(
    marks: MarkStore,
    names: Sequence[str],
    what: str,
    *,
    path: str | None = None,
    overwrite: bool = False,
    key: str = "tomogram",
) -> tuple[list[Path], int]:
    """Write particle table ``what`` of ``names``; returns ``(files written, rows)``.

    Raises
    ------
    ConfigError
        Unknown ``what``, or nothing to save.
    InputFileError
        A path with another suffix, or one that exists without ``overwrite``.
    """
    table = particle_table(marks, names, what)
    if not len(table):
        raise ConfigError(f"nothing to save: there are no {what} yet")
    targets = _targets(marks.store, what, path, overwrite)
    infos = {n: tomogram_info(marks.store, n, key) for n in sorted(set(table["tomogram"]))}
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}")
        try:
            write_particles(tmp, table, tomograms=infos)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return targets, len(table)
