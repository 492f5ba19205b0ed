"""Partial sums that add field by field: what a batch returns and a round reduces as a tree.

A frozen dataclass whose fields are all sums (arrays or numbers) derives from
:class:`FieldSums`; ``a + b`` then adds every field, so the sums of a round's batches reduce
associatively in any order.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Self, cast

import numpy as np

from cryoflow.errors import GeometryError


class FieldSums:
    """Mixin of frozen dataclasses of partial sums: ``a + b`` adds field by field.

    Both sides must be of one class and every field of one shape; otherwise
    ``GeometryError`` names the class, the field and both shapes.
    """

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        # every subclass is a dataclass
        names = [f.name for f in fields(cast(Any, self))]
        for name in names:
            a, b = np.shape(getattr(self, name)), np.shape(getattr(other, name))
            if a != b:
                raise GeometryError(
                    f"cannot add {type(self).__name__} whose {name} have shapes {a} and {b}"
                )
        return type(self)(*(getattr(self, n) + getattr(other, n) for n in names))
