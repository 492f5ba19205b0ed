"""Ground-truth class names and integer ids, used by every stage downstream.

The label volume ``truth_labels`` holds these ids (``uint8``); per-tilt 2D masks are stored
per class name (``masks2d_<name>``); particle tables name the class in ``class``.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryoflow.errors import ConfigError

BACKGROUND = 0
MEMBRANE = 1  # vesicles and other single membranes
MITO_MEMBRANE = 2  # the double membrane (and cristae) of mitochondria
GRANULE = 3  # dense calcium-phosphate granules inside mitochondria
FILAMENT = 4
RIBOSOME = 5
RUBISCO = 6

#: class name -> integer id in the label volume
CLASS_IDS: dict[str, int] = {
    "background": BACKGROUND,
    "membrane": MEMBRANE,
    "mito_membrane": MITO_MEMBRANE,
    "granule": GRANULE,
    "filament": FILAMENT,
    "ribosome": RIBOSOME,
    "rubisco": RUBISCO,
}

#: integer id -> class name
CLASS_NAMES: dict[int, str] = {v: k for k, v in CLASS_IDS.items()}

#: every foreground class, in id order
FOREGROUND_CLASSES: tuple[str, ...] = tuple(n for n in CLASS_IDS if n != "background")

#: classes that are macromolecules (rows of the particle table)
PARTICLE_CLASSES: tuple[str, ...] = ("ribosome", "rubisco")


def parse_classes(names: Iterable[str]) -> tuple[str, ...]:
    """Validate foreground class names; return them unique, in id order.

    Raises
    ------
    ConfigError
        When a name is not a foreground class (the message lists the valid ones).
    """
    wanted = set()
    for name in names:
        if name not in FOREGROUND_CLASSES:
            raise ConfigError(
                f"unknown class {name!r}; valid classes are {', '.join(FOREGROUND_CLASSES)}"
            )
        wanted.add(name)
    if "granule" in wanted and "mito_membrane" not in wanted:
        raise ConfigError("class 'granule' needs 'mito_membrane' (granules sit in mitochondria)")
    return tuple(n for n in FOREGROUND_CLASSES if n in wanted)
