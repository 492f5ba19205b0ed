"""Subtomogram phantoms: noisy, wedge-filtered copies of known shapes with their truth.

Shapes are unions of ellipsoids in Ångström (a :class:`Shape`), so they render at any voxel
size; :func:`shape_from_template` takes the ribosome-like and RuBisCO-like templates of
:mod:`cryoflow.simulate.particles`, :func:`cyclic_shape` builds a ``Cn`` shape and
:func:`hinge_shape` a two-body shape whose arm swings about a hinge (conformations).

Each particle ``i`` (:func:`simulate_subtomograms`):

1. draws a shape (``labels[i]``, any list of shapes), a uniformly random orientation
   ``R_i`` (the contract's ZYZ Euler angles, reference -> tomogram) and a shift ``s_i``
   (uniform in a ball of ``max_shift_px``; the particle's centre relative to the box centre);
2. is rendered analytically: the density at voxel offset ``r`` is the shape's at
   ``R_i^-1 (r - s_i)``, each ellipsoid a soft-edged solid (``tanh`` edge of half a voxel),
   then blurred by a Gaussian of ``blur_px`` (independent of the alignment code's rotations);
3. gets white Gaussian noise; signal and noise are filtered by the missing wedge of its tilt
   range (the contract's rule), as a tomogram's are, in a region twice the box, and the box
   is cut out of it (so the wedge's elongated tails are cut at the box's faces, as in a
   tomogram, not wrapped around); the noise is scaled so that ``var(signal) / var(noise) =
   snr`` in the box.

The truth maps are the shapes rendered the same way in the reference frame (no rotation or
shift, no wedge, no noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryoflow.errors import ConfigError
from cryoflow.geometry.rotation import matrix_zyx_from_euler, random_euler
from cryoflow.kernels.wedge import apply_wedge, parse_tilt_range
from cryoflow.simulate.particles import Template, template

#: half-width (voxels) of the tanh edge of every rendered ellipsoid
EDGE = 1.0


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid: centre and semi-axes ``(z, y, x)`` in Å, its own rotation (body frame
    on ``(z, y, x)``: ``p_body = centre + rotation_zyx @ p_local``) and a density."""

    center_angstrom: tuple[float, float, float]
    radii_angstrom: tuple[float, float, float]
    rotation_zyx: tuple[tuple[float, float, float], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    density: float = 1.0


@dataclass(frozen=True)
class Shape:
    """A named union of ellipsoids (densities combine by maximum)."""

    name: str
    parts: tuple[Ellipsoid, ...]


def shape_from_template(tmpl: Template) -> Shape:
    """The :class:`Shape` of a :mod:`cryoflow.simulate.particles` template."""
    parts = tuple(Ellipsoid(b.center_angstrom, b.radii_angstrom) for b in tmpl.blobs)
    return Shape(f"{tmpl.name}{tmpl.conformation}", parts)


def ribosome_shape(conformation: int = 0) -> Shape:
    """The simulator's ribosome-like particle (asymmetric), conformation 0 or 1."""
    return shape_from_template(template("ribosome", conformation))


def cyclic_shape(n: int, *, radius_angstrom: float = 60.0) -> Shape:
    """A chiral ``Cn`` ring: ``n`` subunits about ``z``, each a lobe, a knob above and offset
    to one side (so the shape has ``Cn`` symmetry and no two-fold axis: not ``Dn``)."""
    if int(n) < 1:
        raise ConfigError(f"a cyclic shape needs n >= 1 subunits, got {n}")
    parts = [Ellipsoid((0.0, 0.0, 0.0), (70.0, 25.0, 25.0))]  # central stalk along z
    for k in range(int(n)):
        a = 2 * np.pi * k / int(n)
        b = a + 0.6 * np.pi / int(n)
        r = radius_angstrom
        parts.append(Ellipsoid((-15.0, r * np.sin(a), r * np.cos(a)), (30.0, 22.0, 22.0)))
        parts.append(
            Ellipsoid((35.0, 1.1 * r * np.sin(b), 1.1 * r * np.cos(b)), (16.0, 14.0, 14.0))
        )
    return Shape(f"C{int(n)}", tuple(parts))


def hinge_shape(angle_deg: float) -> Shape:
    """A two-body shape: a fixed body and an arm swung by ``angle_deg`` about a hinge axis.

    The hinge is the ``y`` axis through ``(z, x) = (40, 0)`` Å; at 0 degrees the arm points
    along ``+x``. The arm is a rotated ellipsoid plus a knob at its end.
    """
    t = np.radians(float(angle_deg))
    # rotation about y acting on (z, y, x): z' = z cos + x sin, x' = -z sin + x cos
    rot = ((np.cos(t), 0.0, np.sin(t)), (0.0, 1.0, 0.0), (-np.sin(t), 0.0, np.cos(t)))
    hinge = np.array([40.0, 0.0, 0.0])
    r = np.array(rot)

    def on_arm(p: Sequence[float]) -> tuple[float, float, float]:
        q = hinge + r @ np.asarray(p, dtype=float)
        return (float(q[0]), float(q[1]), float(q[2]))

    body = (
        Ellipsoid((-20.0, 0.0, 0.0), (55.0, 45.0, 40.0)),
        Ellipsoid((-10.0, 35.0, -30.0), (25.0, 25.0, 25.0)),
    )
    arm = (
        Ellipsoid(on_arm((0.0, 0.0, 50.0)), (18.0, 22.0, 50.0), rot),
        Ellipsoid(on_arm((0.0, 15.0, 100.0)), (22.0, 22.0, 22.0)),
    )
    return Shape(f"hinge{float(angle_deg):g}", body + arm)


def render_shape(
    shape: Shape,
    box: int,
    pixel_size_angstrom: float,
    *,
    rotation_zyx: np.ndarray | None = None,
    shift_zyx_px: Sequence[float] = (0.0, 0.0, 0.0),
    blur_px: float = 1.0,
) -> np.ndarray:
    """ndarray (B, B, B) float32: the shape's density, rotated and shifted (see module doc)."""
    px = float(pixel_size_angstrom)
    if not px > 0 or int(box) < 4:
        raise ConfigError(f"render needs a pixel size > 0 and a box >= 4, got {px}, {box}")
    c = np.arange(int(box), dtype=np.float64) - int(box) // 2
    r = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1) - np.asarray(shift_zyx_px)
    m = np.eye(3) if rotation_zyx is None else np.asarray(rotation_zyx, dtype=float)
    body = (r @ m) * px  # R^-1 r = R^T r, in Å; row-vector form
    out = np.zeros((int(box),) * 3)
    for e in shape.parts:
        local = (body - np.asarray(e.center_angstrom)) @ np.asarray(e.rotation_zyx, dtype=float)
        radii = np.asarray(e.radii_angstrom, dtype=float)
        rho = np.sqrt(((local / radii) ** 2).sum(-1))
        # signed distance (voxels) ~ (rho - 1) * smallest radius; half-voxel tanh edge
        d = (rho - 1.0) * radii.min() / px
        out = np.maximum(out, e.density * 0.5 * (1.0 - np.tanh(d / EDGE)))
    if blur_px > 0:
        out = ndimage.gaussian_filter(out, blur_px, mode="constant")
    return out.astype(np.float32)


@dataclass(frozen=True)
class SubtomoSet:
    """Simulated particles and their truth.

    ``volumes`` (n, B, B, B) float32; ``euler_deg`` (n, 3); ``shifts_zyx_px`` (n, 3);
    ``tilt_ranges`` (n, 2); ``labels`` (n,) shape index; ``truth`` (n_shapes, B, B, B);
    ``clean`` (n, B, B, B) the noise-free, wedge-filtered particles.
    """

    volumes: np.ndarray
    euler_deg: np.ndarray
    shifts_zyx_px: np.ndarray
    tilt_ranges: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    clean: np.ndarray
    pixel_size_angstrom: float


def simulate_subtomograms(
    shapes: Sequence[Shape],
    n: int,
    *,
    box: int,
    pixel_size_angstrom: float,
    snr: float | None = 0.5,
    tilt_range_deg: Sequence[float] | np.ndarray = (-60.0, 60.0),
    max_shift_px: float = 2.0,
    blur_px: float = 1.0,
    labels: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
) -> SubtomoSet:
    """``n`` particles of ``shapes`` (see module docstring).

    ``tilt_range_deg`` is one ``(min, max)`` for all or an ``(n, 2)`` array; ``labels`` the
    shape of each particle (default: uniformly random); ``snr=None`` adds no noise.
    """
    if not shapes:
        raise ConfigError("simulate_subtomograms needs at least one shape")
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise ConfigError(f"snr must be a finite number > 0 (or None), got {snr}")
    rng = np.random.default_rng(seed)
    tr = np.asarray(tilt_range_deg, dtype=float)
    tr = np.broadcast_to(tr, (int(n), 2)).copy() if tr.shape == (2,) else tr.reshape(-1, 2)
    if tr.shape[0] != int(n):
        raise ConfigError(f"need one tilt range or one per particle, got {tr.shape[0]} for {n}")
    for row in tr:
        parse_tilt_range(row)
    lab = rng.integers(0, len(shapes), int(n)) if labels is None else np.asarray(labels, dtype=int)
    if lab.shape != (int(n),) or lab.min(initial=0) < 0 or lab.max(initial=0) >= len(shapes):
        raise ConfigError(f"labels must be (n,) indices into the {len(shapes)} shapes")
    euler = random_euler(rng, int(n))
    direction = rng.normal(size=(int(n), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    shifts = direction * (max_shift_px * rng.random(int(n)) ** (1 / 3))[:, None]
    vols = np.empty((int(n), box, box, box), np.float32)
    clean = np.empty_like(vols)
    big = 2 * box  # the wedge acts on a region twice the box; the box is cut out of it
    cut = slice(big // 2 - box // 2, big // 2 - box // 2 + box)
    for i in range(int(n)):
        m = matrix_zyx_from_euler(euler[i])
        sig = render_shape(
            shapes[lab[i]],
            big,
            pixel_size_angstrom,
            rotation_zyx=m,
            shift_zyx_px=shifts[i],
            blur_px=blur_px,
        )
        clean[i] = apply_wedge(sig, tr[i])[cut, cut, cut]
        if snr is None:
            vols[i] = clean[i]
            continue
        noise = apply_wedge(rng.normal(size=sig.shape).astype(np.float32), tr[i])[cut, cut, cut]
        scale = np.sqrt(clean[i].var(dtype=np.float64) / snr / noise.var(dtype=np.float64))
        vols[i] = clean[i] + (scale * noise).astype(np.float32)
    truth = np.stack([render_shape(s, box, pixel_size_angstrom, blur_px=blur_px) for s in shapes])
    return SubtomoSet(vols, euler, shifts, tr, lab, truth, clean, float(pixel_size_angstrom))
