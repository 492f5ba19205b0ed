"""Ground truth of the two-body hinge phantom (:func:`cryoflow.simulate.subtomo.hinge_shape`):
its body masks and the true pose of each body, against which multi-body refinement is scored.

- :func:`hinge_body_masks`: each body (the fixed body's two ellipsoids, the arm's two at a
  given swing) rendered, thresholded at 0.2, dilated 2 voxels and softened (Gaussian of 1
  voxel): the soft masks ``cryoflow multibody --bodies`` takes.
- :func:`hinge_angle_errors`: per particle and body, the angle (degrees) between the refined
  body orientation and the truth when the set's consensus pose is the fixed body's true pose:
  the fixed body's truth is the consensus itself; the arm's is the consensus turned about the
  hinge axis by ``swing - a0``, where ``a0`` (the arm's angle in the body's reconstruction,
  which the data fix only up to that offset) is fitted once for the whole set on a 0.5-degree
  grid (the offset minimising the arm's median error).
- :func:`body_sharpness`: per body, the resolution (Å) where the FSC against the truth (the
  hinge with its arm at ``a0``) inside the body's own mask falls below ``threshold``, of the
  body's map and of the consensus map, and their ratio (below 1: the body's map is the
  sharper in its region). At FSC 0.5 the crossing is set by the maps' noise more than by the
  smear of a moving body: measured on the 20^3, 16 Å hinge, a noisy map of the arm at its
  swing and the noisy average of its four swings cross 0.5 within 1 % of each other, while at
  0.8 the smeared one falls a shell earlier; so both thresholds are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryoflow.simulate.subtomo import Shape, hinge_shape, render_shape

__all__ = [
    "HingeErrors",
    "arm_truth",
    "body_sharpness",
    "hinge_angle_errors",
    "hinge_body_masks",
]


def hinge_body_masks(angle_deg: float, box: int, pixel_size_angstrom: float) -> np.ndarray:
    """float32 (2, B, B, B) in ``[0, 1]``: the fixed body's and the arm's soft masks."""
    from scipy import ndimage

    full = hinge_shape(angle_deg)
    out = []
    for k, parts in enumerate((full.parts[:2], full.parts[2:]), start=1):
        v = render_shape(Shape(f"body{k}", parts), box, pixel_size_angstrom, blur_px=0.0)
        m = ndimage.binary_dilation(v > 0.2, iterations=2).astype(np.float32)
        out.append(np.clip(ndimage.gaussian_filter(m, 1.0), 0.0, 1.0))
    return np.stack(out).astype(np.float32)


def arm_truth(consensus_euler_deg: np.ndarray, swing_deg: np.ndarray, a0: float) -> np.ndarray:
    """(n, 2, 3, 3) true body orientations (the contract's ``R`` on ``(x, y, z)``): the
    consensus for the fixed body, the consensus turned by ``swing - a0`` about the hinge."""
    from scipy.spatial.transform import Rotation

    from cryoflow.geometry.rotation import matrix_xyz_from_euler

    r_cons = matrix_xyz_from_euler(np.asarray(consensus_euler_deg, dtype=float))
    # the hinge turns (z, y, x) by +t about y: in (x, y, z) a turn of -t about y
    turn = np.outer(-(np.asarray(swing_deg, dtype=float) - a0), [0.0, 1.0, 0.0])
    arm = r_cons @ Rotation.from_rotvec(turn, degrees=True).as_matrix()
    return np.stack([r_cons, arm], axis=1)


@dataclass(frozen=True)
class HingeErrors:
    """errors (n, 2) degrees per particle and body; a0 the fitted arm offset (degrees);
    consensus (n, 2) the same errors of the consensus pose itself (no multi-body: the peer)."""

    errors: np.ndarray
    a0: float
    consensus: np.ndarray


def hinge_angle_errors(
    body_euler_deg: np.ndarray, consensus_euler_deg: np.ndarray, swing_deg: np.ndarray
) -> HingeErrors:
    """Per-body angle errors of refined body poses ``(n, 2, 3)`` (module docstring)."""
    from cryoflow.kernels.heterogeneity.metrics import body_angle_errors_deg

    swing = np.asarray(swing_deg, dtype=float)
    grid = np.arange(swing.min() - 10.0, swing.max() + 10.01, 0.5)
    med = [
        np.median(
            body_angle_errors_deg(body_euler_deg, arm_truth(consensus_euler_deg, swing, g))[:, 1]
        )
        for g in grid
    ]
    a0 = float(grid[int(np.argmin(med))])
    truth = arm_truth(consensus_euler_deg, swing, a0)
    err = body_angle_errors_deg(body_euler_deg, truth)
    cons = np.repeat(np.asarray(consensus_euler_deg, dtype=float)[:, None], 2, axis=1)
    return HingeErrors(err, a0, body_angle_errors_deg(cons, truth))


def body_sharpness(
    body_maps: np.ndarray,
    consensus_map: np.ndarray,
    masks: np.ndarray,
    a0: float,
    pixel_size_angstrom: float,
    threshold: float = 0.5,
) -> list[dict[str, float]]:
    """Per body (``body_maps`` and ``masks`` (nb, B, B, B), ``consensus_map`` (B, B, B)):
    ``body_angstrom``, ``consensus_angstrom`` and ``ratio`` (module docstring)."""
    from cryoflow.kernels.fsc import fsc

    px = float(pixel_size_angstrom)
    truth = render_shape(hinge_shape(a0), int(np.shape(consensus_map)[-1]), px)
    out = []
    for body, m in zip(body_maps, masks, strict=True):
        b = fsc(body, truth, m).resolution_px(threshold) * px
        c = fsc(consensus_map, truth, m).resolution_px(threshold) * px
        out.append({"body_angstrom": b, "consensus_angstrom": c, "ratio": b / c})
    return out
