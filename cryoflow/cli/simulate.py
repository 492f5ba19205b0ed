"""``cryoflow simulate``: synthetic cellular tomograms with ground truth, into a store."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        out: str = typer.Option(..., "--out", help="Dataset store to write (STORE.zarr)."),
        preset: str = typer.Option("tiny", "--preset", help="tiny, demo or realistic."),
        n_tomograms: int = typer.Option(None, "--n-tomograms", help="Tomograms to simulate."),
        seed: int = typer.Option(None, "--seed", help="Root seed (default 0)."),
        snr: float = typer.Option(None, "--snr", help="Per-tilt signal/noise variance ratio."),
        tilt_range: tuple[float, float] | None = typer.Option(
            None, "--tilt-range", help="Lowest and highest tilt angle, degrees."
        ),
        tilt_step: float = typer.Option(None, "--tilt-step", help="Tilt increment, degrees."),
        shape: tuple[int, int, int] | None = typer.Option(
            None, "--shape", help="Volume shape Z Y X in voxels."
        ),
        tilt_axis: float = typer.Option(
            None, "--tilt-axis", help="In-plane rotation of the tilt axis, degrees (default 0)."
        ),
        blur: str = typer.Option(None, "--blur", help="none, gaussian or ctf."),
        contrast: str = typer.Option(
            None,
            "--contrast",
            help="em (dense matter dark on a bright background, as microscopes record it) "
            "or mass (projected mass, dense = bright; the presets' default).",
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace tomograms of the same names."
        ),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """Simulate cellular phantoms, their tilt series, 2D/3D truth and reconstructions."""
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.simulate import check_free, simulate_dataset
        from cryoflow.simulate.dataset import SimulationConfig

        overrides = {
            "n_tomograms": n_tomograms,
            "seed": seed,
            "snr": snr,
            "tilt_step_deg": tilt_step,
            "tilt_axis_deg": tilt_axis,
            "tilt_min_deg": None if tilt_range is None else tilt_range[0],
            "tilt_max_deg": None if tilt_range is None else tilt_range[1],
            "shape": None if shape is None else tuple(shape),
            "blur": blur,
            "contrast": contrast,
        }
        config = SimulationConfig.preset(
            preset, **{k: v for k, v in overrides.items() if v is not None}
        )
        check_free(out, config, overwrite)
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            names = simulate_dataset(client, out, config, overwrite=overwrite)
        z, y, x = config.shape
        print(
            f"cryoflow: simulated {len(names)} tomogram(s) ({', '.join(names)}): "
            f"{config.angles_deg.size} tilts of {y} x {x}, volumes {z} x {y} x {x} -> {out}"
        )
