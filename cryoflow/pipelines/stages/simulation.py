"""A simulated dataset written into a store, tomogram by tomogram, all or nothing (the
``simulate`` stage's writer).

Per tomogram ``sim_NNN`` (same layout as ingest, see ``docs/design/store.md``):

- ``tilt_series`` ``(tilt, y, x)`` with its geometry, ``config.geometry``
  (``TiltGeometry.single_axis(angles, tilt_axis_deg=...)``);
- ``volumes/truth_density`` and ``labels/truth_labels`` ``(z, y, x)`` (ids in
  :mod:`cryoflow.simulate.classes`);
- ``results/truth/masks2d_<class>`` ``(tilt, y, x)`` uint8, one per present class;
- ``results/truth/particles`` and ``results/truth/mito_boxes`` tables;
- ``volumes/tomogram``: the weighted back-projection of ``cryoflow reconstruct``
  (:func:`cryoflow.pipelines.stages.reconstruct.reconstruction`) of the simulated tilt series.

Tomograms are simulated in parallel on the Client, a batch (one per worker) at a time: one
phantom task per tomogram, its tilts split into tasks of ``tilts_per_task`` tilts (all tilts
for small volumes), the reconstruction chunked in 3D. The batch is persisted on the cluster,
then written with the store's chunk writers and released.

All or nothing per tomogram: a tomogram is first written whole, with the ordinary store
writers, into a staging dataset ``tomograms/.tmp-<name>-<random>/`` (a temporary node, like
the one the store makes for any first write of a tomogram), then published under
``tomograms/<name>`` in one step by the store's own :func:`cryoflow.io.nodes.publish`
(a directory rename on a local file system). A failure anywhere (truth, tables,
reconstruction) removes the staging node and leaves the store as it was: no half-written
tomogram is ever listed, and with ``overwrite`` the old tomogram stays whole. ``overwrite``
replaces a tomogram whole, so results computed from the old one go with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import zarr

from cryoflow.errors import AlreadyExistsError
from cryoflow.io import nodes
from cryoflow.io import store as S
from cryoflow.io.layout import TOMOGRAMS
from cryoflow.io.provenance import make_provenance
from cryoflow.pipelines.cluster.progress import runner, wait_with_progress
from cryoflow.simulate.dataset import SimulationConfig

__all__ = ["check_free", "simulate_dataset", "tomogram_graph"]

TRUTH_STEP = "truth"


def tomogram_graph(config: SimulationConfig, index: int) -> dict[str, Any]:
    """Lazy simulation of tomogram ``index`` (:func:`cryoflow.graph.simulation.tomogram_graph`)
    plus ``tomogram`` (Z, Y, X) float32: its reconstruction, exactly as ``cryoflow
    reconstruct`` makes it."""
    from cryoflow.graph.simulation import tomogram_graph as phantom_graph
    from cryoflow.pipelines.stages.reconstruct import ReconstructParams, reconstruction

    graph = phantom_graph(config, index)
    graph["tomogram"], _ = reconstruction(
        graph["tilt_series"],
        config.geometry,
        ReconstructParams(thickness=config.shape[0], chunk=128),
        prefix=f"simulate-{config.tomogram_name(index)}",
    )
    return graph


def _flatten(graph: dict[str, Any]) -> dict[str, Any]:
    """``{"masks2d": {c: a}}`` -> ``{"masks2d/c": a}`` (Client.persist takes a flat list)."""
    flat = {k: v for k, v in graph.items() if k != "masks2d"}
    flat.update({f"masks2d/{c}": a for c, a in graph["masks2d"].items()})
    return flat


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    graph = {k: v for k, v in flat.items() if not k.startswith("masks2d/")}
    graph["masks2d"] = {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith("masks2d/")}
    return graph


def check_free(store: Any, config: SimulationConfig, overwrite: bool) -> None:
    """Refuse (``AlreadyExistsError``) when a tomogram to simulate exists and no overwrite."""
    names = [config.tomogram_name(i) for i in range(config.n_tomograms)]
    if overwrite:
        return
    S.create_dataset(store)
    taken = sorted(set(S.list_tomograms(store)) & set(names))
    if taken:
        raise AlreadyExistsError(
            f"{store}: tomograms {', '.join(taken)} exist; pass --overwrite to replace them"
        )


def _run_together(client: Any, pendings: list[Any], description: str, quiet: bool) -> None:
    """:func:`cryoflow.io.nodes.run_together` with a progress bar, one cluster round per stage."""
    nodes.run_together(pendings, runner(client, description, quiet))


@dataclass(frozen=True)
class _Staging:
    """Tomogram ``name`` written whole into a staging dataset at ``tomograms/<leaf>``.

    ``leaf`` is a temporary name (``.tmp-<name>-<random>``): readers never see it and
    ``cryoflow verify`` reports it if a crash leaves it behind.
    """

    tomograms: zarr.Group
    leaf: str
    name: str

    @classmethod
    def begin(cls, store: Any, name: str, overwrite: bool) -> _Staging:
        """An empty staging dataset (``AlreadyExistsError`` when ``name`` exists, no overwrite)."""
        tomos = nodes.child_group(S.create_dataset(store), TOMOGRAMS)
        nodes.check_writable(tomos, name, overwrite, "tomogram")
        staging = cls(tomos, nodes.temp_leaf(name), name)
        S.create_dataset(tomos.create_group(staging.leaf))
        return staging

    @property
    def dataset(self) -> zarr.Group:
        """The staging dataset: pass it as ``store`` to the store writers."""
        return nodes.child_group(self.tomograms, self.leaf)

    def publish(self, overwrite: bool) -> None:
        """Move the staged ``tomograms/<name>`` to the real one in one step; drop the staging."""
        staged = f"{self.leaf}/{TOMOGRAMS}/{self.name}"
        nodes.publish(self.tomograms, staged, self.name, overwrite=overwrite)
        self.discard()

    def discard(self) -> None:
        nodes.delete_node(self.tomograms, self.leaf)


def _provenance(config: SimulationConfig) -> dict[str, Any]:
    return make_provenance("simulate", parameters=config.to_dict(), inputs={"seed": config.seed})


def _tilt_series_write(store: Any, name: str, g: dict[str, Any], config: SimulationConfig) -> Any:
    return S.write_tilt_series(
        store,
        name,
        g["tilt_series"],
        config.geometry,
        config.pixel_size_angstrom,
        provenance=_provenance(config),
        compute=False,
    )


def _truth_writes(
    client: Any, store: Any, name: str, g: dict[str, Any], config: SimulationConfig
) -> list[Any]:
    """Pending writes of the truth and the tomogram (tables are written at once)."""
    prov = _provenance(config)
    px = config.pixel_size_angstrom
    pendings = [
        S.write_volume(
            store,
            name,
            "truth_density",
            g["density"],
            pixel_size_angstrom=px,
            provenance=prov,
            compute=False,
        ),
        S.write_volume(
            store,
            name,
            "truth_labels",
            g["labels"],
            pixel_size_angstrom=px,
            provenance=prov,
            kind="label",
            compute=False,
        ),
    ]
    for c, mask in g["masks2d"].items():
        pendings.append(
            S.write_result(
                store,
                name,
                TRUTH_STEP,
                f"masks2d_{c}",
                mask,
                dims=("tilt", "y", "x"),
                provenance=prov,
                attrs={"class": c, "rule": "any-projection, nearest neighbour"},
                compute=False,
            )
        )
    particles, boxes = client.compute([g["particles"], g["mito_boxes"]], sync=True)
    S.write_table(store, name, TRUTH_STEP, "particles", particles, provenance=prov)
    S.write_table(store, name, TRUTH_STEP, "mito_boxes", boxes, provenance=prov)
    recon_prov = make_provenance(
        "reconstruct",
        parameters={"filter": "ramp", "thickness": config.shape[0]},
        inputs={"tilt_series": f"tomograms/{name}/tilt_series", "simulate": config.to_dict()},
    )
    pendings.append(
        S.write_volume(
            store,
            name,
            "tomogram",
            g["tomogram"],
            pixel_size_angstrom=px,
            provenance=recon_prov,
            compute=False,
        )
    )
    return pendings


def simulate_dataset(
    client: Any,
    store: Any,
    config: SimulationConfig,
    *,
    overwrite: bool = False,
    quiet: bool = False,
) -> list[str]:
    """Simulate ``config.n_tomograms`` tomograms into ``store``; return their names.

    Parameters
    ----------
    client : distributed.Client
    store : path, fsspec URL or zarr.Group of the dataset (created when missing)
    config : SimulationConfig
    overwrite : replace tomograms of the same names.

    Raises
    ------
    AlreadyExistsError
        A tomogram of the same name exists and ``overwrite`` is false (nothing is written).
    """
    from distributed import futures_of

    names = [config.tomogram_name(i) for i in range(config.n_tomograms)]
    check_free(store, config, overwrite)
    batch = max(1, len(client.scheduler_info().get("workers", {})))
    for start in range(0, config.n_tomograms, batch):
        idx = list(range(start, min(start + batch, config.n_tomograms)))
        graphs = [_flatten(tomogram_graph(config, i)) for i in idx]
        persisted = client.persist([c for g in graphs for c in g.values()])
        label = ", ".join(names[i] for i in idx)
        wait_with_progress(client, futures_of(persisted), f"simulate {label}", quiet=quiet)
        it = iter(persisted)
        held = [_unflatten({k: next(it) for k in g}) for g in graphs]
        staged: list[_Staging] = []  # begun, not yet published
        try:
            for i in idx:
                staged.append(_Staging.begin(store, names[i], overwrite))
            # 1. the tilt series first: it creates each staged tomogram's group
            pendings = [
                _tilt_series_write(st.dataset, st.name, h, config)
                for st, h in zip(staged, held, strict=True)
            ]
            _run_together(client, pendings, f"write tilt series {label}", quiet)
            # 2. truth, tables and the reconstruction into the staged tomograms
            pendings = [
                p
                for st, h in zip(staged, held, strict=True)
                for p in _truth_writes(client, st.dataset, st.name, h, config)
            ]
            _run_together(client, pendings, f"write truth {label}", quiet)
            # 3. publish each complete tomogram in one step
            while staged:
                staged[0].publish(overwrite)
                staged.pop(0)
        except BaseException:
            for st in staged:
                st.discard()
            raise
        del persisted, held
    return names
