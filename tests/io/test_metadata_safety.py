"""Consolidated metadata never bypasses the per-node safety check; every child is checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from cryoflow.errors import UnsafeStoreError
from cryoflow.io import nodes, store
from cryoflow.io.layout import open_dataset

ANGLES = [0.0, 15.0, 30.0]


def _meta(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _consolidate_with(group_dir: Path, children: dict[str, dict]) -> None:
    """Put ``children`` (relative path -> metadata) into ``group_dir``'s consolidated metadata."""
    meta = _meta(group_dir)
    meta["consolidated_metadata"] = {
        "kind": "inline",
        "must_understand": False,
        "metadata": children,
    }
    (group_dir / "zarr.json").write_text(json.dumps(meta))


def _string_array(meta: dict) -> dict:
    """The same array, but a variable-length string array (a data type cryoflow refuses)."""
    return {**meta, "data_type": "string", "fill_value": "", "codecs": [{"name": "vlen-utf8"}]}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    images = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    store.write_tilt_series(path, "a", images, ANGLES, 2.0)
    store.write_volume(
        path,
        "a",
        "v",
        np.ones((4, 4, 4), np.float32),
        pixel_size_angstrom=2.0,
        provenance={},
        multiscale=False,
    )
    return path


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_root_consolidated_metadata_is_not_trusted(dataset: Path) -> None:
    """The audit's case: the root's consolidated copy said 'string' where the node's own
    zarr.json says float32; reading gave a string array."""
    ts = dataset / "tomograms/a/tilt_series"
    _consolidate_with(
        dataset,
        {
            "tomograms": _meta(dataset / "tomograms"),
            "tomograms/a": _meta(dataset / "tomograms/a"),
            "tomograms/a/tilt_series": _string_array(_meta(ts)),
        },
    )
    # zarr itself follows the consolidated copy: this is what cryoflow must not do
    assert zarr.open_group(str(dataset), mode="r")["tomograms/a/tilt_series"].dtype != np.float32
    opened = store.open_tilt_series(dataset, "a")
    assert opened.dtype == np.float32
    np.testing.assert_array_equal(opened.values, np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    assert store.list_tomograms(dataset) == ["a"]


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_nested_consolidated_metadata_is_not_trusted(dataset: Path) -> None:
    vol = dataset / "tomograms/a/volumes/v"
    _consolidate_with(vol, {"0": _string_array(_meta(vol / "0"))})
    out = store.open_volume(dataset, "a", "v")
    assert out.dtype == np.float32 and float(out.values.sum()) == 64.0


def test_a_zarr_group_given_by_the_caller_is_reopened_without_it(dataset: Path) -> None:
    ts = dataset / "tomograms/a/tilt_series"
    _consolidate_with(
        dataset,
        {
            "tomograms": _meta(dataset / "tomograms"),
            "tomograms/a": _meta(dataset / "tomograms/a"),
            "tomograms/a/tilt_series": _string_array(_meta(ts)),
        },
    )
    group = zarr.open_group(str(dataset), mode="r")  # consolidated metadata loaded
    assert group.metadata.consolidated_metadata is not None
    root = open_dataset(group)
    assert root.metadata.consolidated_metadata is None
    assert nodes.open_node(root, "tomograms/a/tilt_series", what="tilt series").dtype == "float32"


def test_an_unsafe_child_named_c_is_still_checked(dataset: Path) -> None:
    """A child node called ``c`` (a legal name, also the chunk folder's) is not skipped."""
    rng = np.random.default_rng(0)
    store.write_result(
        dataset, "a", "s", "c", rng.normal(size=(3, 4)), dims=("y", "x"), provenance={}
    )
    meta_file = dataset / "tomograms/a/results/s/c/zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle", "configuration": {}}]
    meta_file.write_text(json.dumps(meta))
    root = open_dataset(dataset)
    with pytest.raises(UnsafeStoreError, match=r"results/s'/c: refusing codec 'numcodecs.pickle'"):
        nodes.open_node(root, "tomograms/a/results/s", what="results", require_complete=False)
