"""Synthetic cellular cryo-ET data with ground truth (kernel level: pure, seeded functions).

- :mod:`~cryoflow.simulate.classes`: class names and label ids used everywhere downstream.
- :mod:`~cryoflow.simulate.shapes`: membranes, solids, balls, filaments as voxel masks.
- :mod:`~cryoflow.simulate.particles`: ribosome-like (two conformations) and RuBisCO-like
  templates, random orientations (ZYZ Euler, degrees).
- :mod:`~cryoflow.simulate.phantom`: :func:`make_phantom` assembles a cell.
- :mod:`~cryoflow.simulate.tilts`: contract-geometry projections (a rotated tilt axis through
  the general projector), CTF/Gaussian blur, ``em``/``mass`` contrast, noise at a set SNR,
  per-class 2D masks.
- :mod:`~cryoflow.simulate.recon`: a small NumPy filtered back-projection.
- :mod:`~cryoflow.simulate.dataset`: :class:`SimulationConfig` (presets ``tiny``, ``demo``,
  ``realistic``) and :func:`simulate_tomogram`.

The store-writing pipeline is :func:`cryoflow.pipelines.stages.simulation.simulate_dataset`; the design
note is ``docs/design/simulator.md``.
"""
