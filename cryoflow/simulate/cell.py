"""Cell models: how many mitochondria and granules a phantom holds, how large and how dense.

A :class:`CellModel` is chosen by name (``SimulationConfig.cell``). ``"default"`` is the rule
every preset used before cell models existed (one mitochondrion per square section, its size
and its 2-5 granules' sizes a fraction of the section's side, granules of relative density
2.5): it draws the same random numbers in the same order, so a seed makes the same volumes as
before. ``"neuron"`` (the paper preset's) is sized in physical units after the 2D-to-3D paper's
data (mitochondria with calcium-phosphate granules in rat-neuron tomograms, Zeng et al. 2023):

- several mitochondria per section (``mito_count`` tries), short semi-axis 700-1100 Å,
  1.3-2.2 times longer in the plane, as round across z as the section allows;
- 15-30 granules per mitochondrion, radius 80-200 Å (granule diameters of 16-40 nm, the
  "tens of nanometres" of the dense matrix granules seen in cryo-ET of mitochondria, Wolf et
  al. 2017, PNAS 114:E6679);
- granules at their physical contrast (below).

Densities (:func:`relative_density`): the phantom's density is mass per voxel in units of
protein's excess over water, ``(rho - 1.00) / (1.35 - 1.00)`` with ``rho`` in g/cm^3, so protein
(1.35 g/cm^3, Fischer et al. 2004, Protein Sci. 13:2825) is 1.0, water/cytoplasm ~0, and the
phantom's cytosol (0.15) and mitochondrial matrix (0.3) sit at ~1.05 and ~1.1 g/cm^3.
Calcium phosphate is far denser: hydroxyapatite 3.16 g/cm^3 (its crystal density, CRC
Handbook of Chemistry and Physics) and amorphous calcium phosphate 2.3-2.9 g/cm^3 depending on
its water content. Mitochondrial granules are amorphous (Wolf et al. 2017), so the neuron
model uses ACP at 2.6 g/cm^3: relative density ``(2.6 - 1.0) / 0.35 = 4.57``, against 2.5 in the
default model. Mass density alone is used; calcium and phosphorus also scatter more electrons
per unit mass than carbon, nitrogen and oxygen, so real granules stand out even more.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryoflow.errors import ConfigError

__all__ = ["CELLS", "CellModel", "cell_model", "relative_density"]

#: g/cm^3: water (vitreous ice ~0.93-1.0), protein (Fischer et al. 2004)
WATER_G_CM3 = 1.0
PROTEIN_G_CM3 = 1.35
#: g/cm^3: hydroxyapatite (crystal), amorphous calcium phosphate (the middle of 2.3-2.9)
HYDROXYAPATITE_G_CM3 = 3.16
ACP_G_CM3 = 2.6


def relative_density(g_cm3: float) -> float:
    """A material's density in the phantom's units: its excess mass over water relative to
    protein's (protein 1.0, water 0.0)."""
    return (float(g_cm3) - WATER_G_CM3) / (PROTEIN_G_CM3 - WATER_G_CM3)


@dataclass(frozen=True)
class CellModel:
    """How a phantom's mitochondria and granules are drawn.

    mito_count : mitochondria tried per tomogram (each placed where nothing else is, up to 40
        tries); ``None``: the default rule (one per square section).
    mito_radius_angstrom : range of the short in-plane semi-axis; ``None``: 0.16-0.22 of the
        section's side (the default rule, with the z semi-axis 0.38 of the thickness).
    mito_elongation : range of the long in-plane semi-axis over the short one.
    granules_per_mito : granules drawn per mitochondrion, ``integers(lo, hi)`` (hi excluded).
    granule_radius_angstrom : range of granule radii; ``None``: 0.025-0.05 of the side.
    granule_density : relative density (:func:`relative_density`).
    """

    mito_count: int | None = None
    mito_radius_angstrom: tuple[float, float] | None = None
    mito_elongation: tuple[float, float] = (1.2, 1.6)
    granules_per_mito: tuple[int, int] = (2, 6)
    granule_radius_angstrom: tuple[float, float] | None = None
    granule_density: float = 2.5

    def __post_init__(self) -> None:
        lo, hi = self.granules_per_mito
        if not 0 <= lo < hi:
            raise ConfigError(f"granules_per_mito must be (lo, hi) with 0 <= lo < hi, got {lo, hi}")
        for name in ("mito_radius_angstrom", "granule_radius_angstrom", "mito_elongation"):
            r = getattr(self, name)
            if r is not None and not 0 < r[0] <= r[1]:
                raise ConfigError(f"{name} must be a range 0 < lo <= hi, got {r}")
        if self.mito_count is not None and self.mito_count < 1:
            raise ConfigError(f"mito_count must be >= 1 (or None), got {self.mito_count}")
        if not self.granule_density > 0:
            raise ConfigError(f"granule_density must be > 0, got {self.granule_density}")


CELLS: dict[str, CellModel] = {
    "default": CellModel(),
    "neuron": CellModel(
        mito_count=7,
        mito_radius_angstrom=(700.0, 1100.0),
        mito_elongation=(1.3, 2.2),
        granules_per_mito=(15, 31),
        granule_radius_angstrom=(80.0, 200.0),
        granule_density=relative_density(ACP_G_CM3),
    ),
}


def cell_model(name: str) -> CellModel:
    """The cell model ``name``; ``ConfigError`` naming the valid ones otherwise."""
    try:
        return CELLS[name]
    except KeyError:
        raise ConfigError(f"unknown cell model {name!r}; valid: {', '.join(CELLS)}") from None
