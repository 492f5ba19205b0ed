"""The picking page's marks and picks, kept in the store the moment they change.

Two tables per tomogram (``cryoflow.io.results`` tables, published whole on every change, so
a reload, a crash or a second browser tab never sees a half-written one):

- ``results/picker/marks``: the user's examples, columns ``id, x, y, z, kind`` with ``kind``
  ``"positive"`` (an example particle) or ``"negative"`` (an example of what is not one);
- ``results/picker/picks``: what network-assisted picking found, columns
  ``id, x, y, z, score, status`` with ``status`` ``"pending"``, ``"accepted"`` or ``"rejected"``.

Positions are level-0 voxels of the stored tomogram (``CONTRACT.md``, "Coordinates"). The
training set of the next search is the positives plus the accepted picks (examples) and the
negatives plus the rejected picks (negatives): :func:`training_set`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryoflow.errors import ConfigError, NodeNotFoundError
from cryoflow.io import nodes
from cryoflow.io.layout import RESULTS, TOMOGRAMS, open_dataset
from cryoflow.io.results import read_table, write_table

__all__ = ["KINDS", "STATUSES", "STEP", "MarkStore"]

STEP = "picker"
KINDS = ("positive", "negative")
STATUSES = ("pending", "accepted", "rejected")
_COLUMNS = {
    "marks": {"id": "int64", "x": "float64", "y": "float64", "z": "float64", "kind": "object"},
    "picks": {
        "id": "int64",
        "x": "float64",
        "y": "float64",
        "z": "float64",
        "score": "float64",
        "status": "object",
    },
}


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _COLUMNS[table].items()})


@dataclass(frozen=True)
class Hit:
    """What a click at a level-0 position met: a row of ``table`` (``marks``/``picks``)."""

    table: str
    id: int


class MarkStore:
    """Reads and changes the marks and picks tables of ``store`` (one writer lock per server)."""

    def __init__(self, store: object) -> None:
        self.store = store
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------ tables
    def read(self, name: str, table: str) -> pd.DataFrame:
        """Table ``table`` (``"marks"``/``"picks"``) of tomogram ``name`` (empty when none)."""
        root = open_dataset(self.store)
        if not nodes.exists(root, f"{TOMOGRAMS}/{name}/{RESULTS}/{STEP}/{table}"):
            return _empty(table)
        out = read_table(self.store, name, STEP, table)
        return out.astype(_COLUMNS[table]) if len(out) else _empty(table)

    def _write(self, name: str, table: str, frame: pd.DataFrame) -> None:
        frame = frame.reset_index(drop=True).astype(_COLUMNS[table])
        write_table(self.store, name, STEP, table, frame, provenance={}, overwrite=True)

    # ------------------------------------------------------------------------ marks
    def add(self, name: str, xyz: tuple[float, float, float], kind: str) -> int:
        """Add a ``kind`` mark at level-0 ``xyz``; returns its id."""
        if kind not in KINDS:
            raise ConfigError(f"mark kind must be one of {', '.join(KINDS)}; got {kind!r}")
        with self._lock:
            marks = self.read(name, "marks")
            new_id = int(marks["id"].max()) + 1 if len(marks) else 1
            row = pd.DataFrame(
                [{"id": new_id, "x": xyz[0], "y": xyz[1], "z": xyz[2], "kind": kind}]
            )
            self._write(name, "marks", pd.concat([marks, row], ignore_index=True))
        return new_id

    def remove(self, name: str, mark_id: int) -> dict[str, object]:
        """Remove mark ``mark_id`` of tomogram ``name``; returns it (``xyz``, ``kind``)."""
        with self._lock:
            marks = self.read(name, "marks")
            row = marks[marks["id"] == mark_id]
            if not len(row):
                raise NodeNotFoundError(f"tomogram {name!r} has no mark {mark_id}")
            self._write(name, "marks", marks[marks["id"] != mark_id])
        rec = row.iloc[0]
        return {"xyz": [float(rec["x"]), float(rec["y"]), float(rec["z"])], "kind": rec["kind"]}

    # ------------------------------------------------------------------------ picks
    def set_status(self, name: str, ids: Iterable[int], status: str) -> dict[int, str]:
        """Set the status of picks ``ids`` of tomogram ``name``; returns the previous status
        of each pick that changed."""
        if status not in STATUSES:
            raise ConfigError(f"pick status must be one of {', '.join(STATUSES)}; got {status!r}")
        with self._lock:
            picks = self.read(name, "picks")
            hit = picks["id"].isin([int(i) for i in ids]) & (picks["status"] != status)
            before = dict(zip(picks.loc[hit, "id"].tolist(), picks.loc[hit, "status"], strict=True))
            if hit.any():
                picks.loc[hit, "status"] = status
                self._write(name, "picks", picks)
            return {int(k): str(v) for k, v in before.items()}

    def replace_picks(self, name: str, found: pd.DataFrame, radius: float) -> int:
        """Store a new search's ``found`` (``x, y, z, score``) of tomogram ``name`` as pending.

        Accepted and rejected picks stay; a found pick within ``radius`` voxels of one of them
        (the same particle) is dropped. Returns the number of pending picks stored.
        """
        with self._lock:
            old = self.read(name, "picks")
            kept = old[old["status"] != "pending"]
            xyz = found[["x", "y", "z"]].to_numpy(dtype=float).reshape(-1, 3)
            if len(kept) and len(xyz):
                ref = kept[["x", "y", "z"]].to_numpy(dtype=float)
                dist = np.linalg.norm(xyz[:, None, :] - ref[None, :, :], axis=-1).min(axis=1)
                found = found[dist > radius]
            start = int(old["id"].max()) + 1 if len(old) else 1
            new = pd.DataFrame(
                {
                    "id": np.arange(start, start + len(found), dtype=np.int64),
                    "x": found["x"].to_numpy(dtype=float),
                    "y": found["y"].to_numpy(dtype=float),
                    "z": found["z"].to_numpy(dtype=float),
                    "score": found["score"].to_numpy(dtype=float),
                    "status": ["pending"] * len(found),
                }
            )
            self._write(name, "picks", pd.concat([kept, new], ignore_index=True))
            return len(new)

    # ------------------------------------------------------------------------ queries
    def hit(
        self, name: str, xyz: tuple[float, float, float], axis_index: int, radius: float
    ) -> Hit | None:
        """The mark (else the pick) whose circle on the current view contains ``xyz``.

        A particle of ``radius`` voxels at distance ``d`` from the view plane (along axis
        ``axis_index`` of ``(x, y, z)``) shows as a circle of radius ``sqrt(radius^2 - d^2)``.
        """
        p = np.asarray(xyz, dtype=float)
        for table in ("marks", "picks"):
            rows = self.read(name, table)
            if not len(rows):
                continue
            pos = rows[["x", "y", "z"]].to_numpy(dtype=float)
            d = np.abs(pos[:, axis_index] - p[axis_index])
            shown = np.sqrt(np.clip(radius**2 - d**2, 0, None))
            inplane = np.delete(pos - p, axis_index, axis=1)
            dist = np.linalg.norm(inplane, axis=1)
            inside = (d < radius) & (dist <= np.maximum(shown, 1.0))
            if inside.any():
                best = int(np.argmin(np.where(inside, dist, np.inf)))
                return Hit(table, int(rows["id"].iloc[best]))
        return None

    def training_set(self, names: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(examples, negatives)`` over ``names``: columns ``tomogram, x, y, z``."""
        pos: list[pd.DataFrame] = []
        neg: list[pd.DataFrame] = []
        for name in names:
            marks, picks = self.read(name, "marks"), self.read(name, "picks")
            for frame, keep, into in (
                (marks, marks["kind"] == "positive", pos),
                (marks, marks["kind"] == "negative", neg),
                (picks, picks["status"] == "accepted", pos),
                (picks, picks["status"] == "rejected", neg),
            ):
                rows = frame.loc[keep, ["x", "y", "z"]]
                into.append(rows.assign(tomogram=name)[["tomogram", "x", "y", "z"]])
        empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in ("tomogram", "x", "y", "z")})
        return (
            pd.concat(pos, ignore_index=True) if pos else empty,
            pd.concat(neg, ignore_index=True) if neg else empty,
        )
