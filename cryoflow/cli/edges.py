"""``cryoflow edges``: membrane-like edges in 3D from 2D edge maps (the paper's Algorithm 2)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("edges")
    def edges(
        store: str = typer.Argument(..., help="Dataset store (STORE.zarr)."),
        name: str = typer.Option(None, "--name", help="Tomogram name."),
        all_: bool = typer.Option(False, "--all", help="Every tomogram of the dataset."),
        sigma1: float = typer.Option(1.0, "--sigma1", help="Small DoG sigma (pixels)."),
        sigma2: float = typer.Option(2.0, "--sigma2", help="Large DoG sigma (pixels)."),
        alpha: float = typer.Option(
            0.5, "--alpha", help="2D threshold min+alpha*(max-min) of the DoG peaks."
        ),
        denoise: str = typer.Option("none", "--denoise", help="none, gaussian or median."),
        denoise_size: float = typer.Option(1.0, "--denoise-size", help="Sigma or window (px)."),
        invert: bool = typer.Option(False, "--invert", help="Dark structures on bright images."),
        iterations: int = typer.Option(4, "--iterations", "-m", help="Refinement iterations m."),
        window: int = typer.Option(1, "--window", help="Neighbour tilts on each side (k)."),
        min_support: int = typer.Option(2, "--min-support", help="Neighbours that must agree."),
        threshold: float = typer.Option(2.0, "--threshold", "-T", help="E3D = sum > T."),
        thickness: int = typer.Option(None, "--thickness", help="Volume depth Z (voxels)."),
        out: str = typer.Option("edges", "--out", help="Result step and label key to write."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler."),
        workers: int = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
    ) -> None:
        """DoG edges per tilt, per-tilt back-projections refined by adjacent tilts, summed."""
        from cryoflow.pipelines.cluster import ClusterConfig, connect
        from cryoflow.pipelines.edges import EdgesConfig, edges_tomogram
        from cryoflow.pipelines.lift import refuse_existing, select_tomograms

        names = select_tomograms(store, name, all_)
        config = EdgesConfig(
            sigma1=sigma1,
            sigma2=sigma2,
            alpha=alpha,
            denoise=denoise,
            denoise_size=denoise_size,
            invert=invert,
            iterations=iterations,
            window=window,
            min_support=min_support,
            threshold=threshold,
            thickness=thickness,
            out=out,
            overwrite=overwrite,
        )
        refuse_existing(store, names, out, ["edges2d", "sums"], overwrite)
        with connect(ClusterConfig.from_env(scheduler=scheduler, n_workers=workers)) as client:
            for tomo in names:
                done = edges_tomogram(client, store, tomo, config)
                print(f"cryoflow: edges {tomo}: {done['n_edge_voxels']} voxels -> labels/{out}")
