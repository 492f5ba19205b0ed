"""Figures of ``cryoflow dewedge``'s output in a simulated store, against the simulator's truth.

For every tomogram with ``volumes/truth_density`` and ``volumes/dewedged``: the figures of
:func:`cryoflow.kernels.wedge_report.filling_figures` of the tomogram (before), the filled volume
(after) and the best of the trivial non-linear peers (:data:`cryoflow.kernels.wedge_report.PEERS`,
best by ``wedge_cc``), then their means.

Usage::

    cryoflow simulate --out S.zarr --preset demo --n-tomograms 2
    cryoflow dewedge S.zarr --all
    python examples/dewedge_store_figures.py S.zarr [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cryoflow.io import store as S
from cryoflow.io.tomograms import tilt_range
from cryoflow.kernels.wedge_report import filling_figures, peer_volumes

KEYS = ("wedge_cc", "wedge_cc_deep", "wedge_cc_half", "cc", "copy_cc")


def figures(store: str, name: str) -> dict[str, dict[str, float]]:
    truth = S.open_volume(store, name, "truth_density").values
    tomo = S.open_volume(store, name, "tomogram").values
    filled = S.open_volume(store, name, "dewedged").values
    tr = tilt_range(store, name).as_tuple
    rows = {
        "before": filling_figures(tomo, truth, tr, reference=tomo),
        "after": filling_figures(filled, truth, tr, reference=tomo),
    }
    peers = {
        p: filling_figures(v, truth, tr, reference=tomo) for p, v in peer_volumes(tomo).items()
    }
    best = max(peers, key=lambda p: peers[p]["wedge_cc"])
    rows[f"best peer ({best})"] = peers[best]
    rows["best peer by cc"] = max(peers.values(), key=lambda f: f["cc"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    report = {n: figures(args.store, n) for n in S.list_tomograms(args.store)}
    print(f"{'':40s}" + "".join(f"{k:>15s}" for k in KEYS))
    for name, rows in report.items():
        for row, figs in rows.items():
            print(f"{name + ' ' + row:40s}" + "".join(f"{figs[k]:15.3f}" for k in KEYS))
    for row in ("before", "after"):
        means = [np.mean([r[row][k] for r in report.values()]) for k in KEYS]
        print(f"{'mean ' + row:40s}" + "".join(f"{v:15.3f}" for v in means))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
