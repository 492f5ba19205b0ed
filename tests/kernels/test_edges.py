"""Algorithm 2: DoG edges, peak threshold, per-tilt back-projections, refinement, chunking."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from cryoflow.geometry import BlockFrame, TiltGeometry
from cryoflow.graph.edges import edge_maps, edge_sums
from cryoflow.kernels import edges as k
from cryoflow.kernels.iou import surface_scores


def reference_bp(image: np.ndarray, angle_deg: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Contract nearest-neighbour back-projection of one binary tilt image (plain NumPy)."""
    Z, Y, X = shape
    U = image.shape[1]
    t = np.deg2rad(angle_deg)
    z = np.arange(Z)[:, None] - (Z - 1) / 2
    x = np.arange(X)[None, :] - (X - 1) / 2
    u = np.rint(x * np.cos(t) + z * np.sin(t) + (U - 1) / 2).astype(int)  # (Z, X)
    ok = (u >= 0) & (u < U)
    out = np.zeros(shape, bool)
    for y in range(Y):
        out[:, y, :][ok] = image[y, u[ok]]
    return out


def test_tilt_backprojections_match_the_contract() -> None:
    rng = np.random.default_rng(0)
    geo = TiltGeometry.single_axis([-40.0, -7.0, 0.0, 23.0, 60.0])
    edges = rng.random((5, 6, 11)) > 0.6
    shape = (9, 6, 10)
    whole = (slice(0, 9), slice(0, 6), slice(0, 10))
    b = k.tilt_backprojections(edges, BlockFrame(geo, shape, (6, 11), whole))
    for h, a in enumerate(geo.angles_deg):
        np.testing.assert_array_equal(b[h], reference_bp(edges[h], a, shape))
    block = (slice(2, 7), slice(1, 4), slice(3, 9))
    part = k.tilt_backprojections(edges[:, 1:4, :], BlockFrame(geo, shape, (6, 11), block, (1, 0)))
    np.testing.assert_array_equal(part, b[:, 2:7, 1:4, 3:9])


def test_peak_threshold_formula() -> None:
    r = np.zeros((9, 9))
    r[2, 2], r[6, 6], r[2, 6] = 1.0, 5.0, 3.0
    assert k.peak_threshold(r, alpha=0.0) == 1.0
    assert k.peak_threshold(r, alpha=0.25) == pytest.approx(1.0 + 0.25 * 4.0)
    assert k.peak_threshold(np.zeros((4, 4))) == float("inf")
    with pytest.raises(ValueError, match="alpha"):
        k.peak_threshold(r, alpha=1.5)


def test_detect_edges_finds_a_bright_line() -> None:
    img = np.zeros((1, 32, 32), np.float32)
    img[0, :, 16] = 1.0
    e = k.detect_edges(img, sigma1=1.0, sigma2=2.0, alpha=0.5)
    assert e[0, 4:28, 16].all()
    assert not e[0, :, :12].any() and not e[0, :, 21:].any()
    with pytest.raises(ValueError, match="sigma1 < sigma2"):
        k.dog(img, 2.0, 1.0)
    with pytest.raises(TypeError):
        k.dog(da.zeros((1, 4, 4)))


def test_refine_trims_runs_from_both_ends() -> None:
    geo = TiltGeometry.single_axis(np.arange(8) * 3.0)
    b = np.zeros((8, 1), bool)
    b[1:6, 0] = True  # one voxel covered by a run of 5 consecutive tilts
    once = k.refine(b, geo, k.Refinement(1))
    np.testing.assert_array_equal(once[:, 0], [0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(k.refine(b, geo, k.Refinement(2))[:, 0], [0, 0, 0, 1, 0, 0, 0, 0])
    assert not k.refine(b, geo, k.Refinement(3)).any()
    # the looser OR rule is stable after one iteration
    loose = k.refine(b, geo, k.Refinement(5, min_support=1))
    np.testing.assert_array_equal(loose, b)
    # the first tilt needs only the one neighbour it has; the second needs both
    end = np.zeros((8, 1), bool)
    end[0:2, 0] = True
    assert k.refine(end, geo, k.Refinement(1))[:, 0].tolist() == [True, False] + [False] * 6


def test_refinement_rejects_impossible_parameters() -> None:
    for bad in ({"iterations": -1}, {"window": 0}, {"min_support": 0}):
        with pytest.raises(ValueError, match="need iterations >= 0, window >= 1"):
            k.Refinement(**bad)
    with pytest.raises(ValueError, match="need iterations >= 0"):
        edge_sums(
            np.zeros((3, 4, 4), bool),
            TiltGeometry.single_axis([0.0, 5.0, 9.0]),
            (4, 4, 4),
            window=0,
        )


def test_refine_follows_angle_order_not_storage_order() -> None:
    angles = np.array([6.0, 0.0, 3.0, 9.0])  # stored out of order
    geo = TiltGeometry.single_axis(angles)
    b = np.array([[True], [True], [True], [False]])  # tilts at 0, 3, 6 degrees
    out = k.refine(b, geo, k.Refinement(1))
    assert out[:, 0].tolist() == [False, True, True, False]  # 3 degrees survives; run shrinks


@pytest.mark.parametrize("chunks", [(5, 7, 9), (16, 20, 24), (3, 20, 5)])
def test_edge_sums_graph_equals_kernel(chunks: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(1)
    geo = TiltGeometry.single_axis(np.arange(-30, 31, 6.0))
    images = rng.random((geo.n_tilts, 20, 24)).astype(np.float32)
    e = edge_maps(da.from_array(images, chunks=(4, 10, 24)), alpha=0.3)
    e_np = e.compute(scheduler="sync")
    np.testing.assert_array_equal(e_np, k.detect_edges(images, alpha=0.3))
    whole = (slice(0, 16), slice(0, 20), slice(0, 24))
    ref = k.edge_sums(e_np, BlockFrame(geo, (16, 20, 24), (20, 24), whole), k.Refinement(2))
    got = edge_sums(e, geo, (16, 20, 24), chunks=chunks, iterations=2)
    assert got.dtype == np.uint16 and got.name.startswith("edges3d-")
    np.testing.assert_array_equal(got.compute(scheduler="sync"), ref)


def test_edge_sums_general_geometry_chunked() -> None:
    rng = np.random.default_rng(2)
    geo = TiltGeometry.from_directions(np.arange(60.0, 121.0, 10.0), np.full(7, 20.0))
    e = rng.random((7, 18, 20)) > 0.7
    whole = (slice(0, 12), slice(0, 18), slice(0, 20))
    ref = k.edge_sums(e, BlockFrame(geo, (12, 18, 20), (18, 20), whole), k.Refinement(1))
    got = edge_sums(e, geo, (12, 18, 20), chunks=(5, 7, 9), iterations=1)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), ref)


def test_refinement_improves_f1_on_a_hollow_sphere() -> None:
    """Experiment 3.2 at 48^3: refinement must raise F1 (best T of each, and at fixed T)."""
    from distributed import Client, LocalCluster

    from cryoflow.pipelines.demo.figures import sphere_metrics

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        m = sphere_metrics(client, size=48, iterations=6)
    assert m["edges_f1_after"] > m["edges_f1_before"] + 0.03
    assert m["edges_f1_fixed_after"] > m["edges_f1_fixed_before"]
    assert 0.5 < m["edges_f1_before"] < 1.0
    assert m["edges_slice"]["truth"].shape == (48, 48)


def test_surface_scores_tolerance() -> None:
    truth = np.zeros((10, 10, 10), bool)
    truth[5] = True
    shifted = np.roll(truth, 1, axis=0)
    assert surface_scores(shifted, truth, 1.0)["f1"] == 1.0
    assert surface_scores(shifted, truth, 0.5)["f1"] == 0.0
    assert surface_scores(np.zeros_like(truth), truth)["f1"] == 0.0
