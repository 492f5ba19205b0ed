"""Pure tilt geometry: projection matrices, directions, chunk footprints. No I/O, no Dask."""

from cryoflow.geometry.footprint import BlockFrame, Footprint, chunk_footprint
from cryoflow.geometry.projection import TiltGeometry, as_geometry

__all__ = ["BlockFrame", "Footprint", "TiltGeometry", "as_geometry", "chunk_footprint"]
