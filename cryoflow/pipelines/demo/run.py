"""``cryoflow demo``: simulate a small cellular dataset and run every stage end to end.

Each demo stage (:mod:`cryoflow.pipelines.demo.stages`) is a function ``(ctx) -> None`` that
adds named figures to ``ctx.metrics`` (each measured against the simulator's ground truth)
and pictures to ``ctx.report``. A failing stage is recorded with its reason, the other stages
still run, and the demo exits non-zero.

Each stage's time is printed with its throughput (:mod:`cryoflow.pipelines.demo.throughput`)
and kept in ``metrics.json`` (``seconds_<stage>``, ``rate_<stage>_<unit>_per_s``). While the
demo runs, ``OUT/metrics.partial.json`` holds the figures and timings of the stages done so far
(a long run that is stopped still tells what it reached); it is removed once ``metrics.json``
is written.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from cryoflow.errors import AlreadyExistsError
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.demo.context import DemoConfig, DemoContext
from cryoflow.pipelines.demo.report import Report
from cryoflow.pipelines.demo.stages import STAGES
from cryoflow.pipelines.demo.throughput import format_rates, rates, stage_work

PARTIAL = "metrics.partial.json"

__all__ = ["DemoConfig", "run_demo"]


def run_demo(config: DemoConfig, cluster: ClusterConfig) -> bool:
    """Run the demo; return True when every stage succeeded."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise AlreadyExistsError(
                f"{out}: output directory is not empty; pass --overwrite to replace the earlier demo"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report("cryoflow demo")
    timings: list[dict[str, Any]] = []
    failures: list[str] = []
    t_all = time.perf_counter()
    sizes = config.sizes.sizes(config.seed)
    with connect(cluster) as client:
        ctx = DemoContext(config, client, out / "dataset.zarr", report)
        for name, stage in STAGES:
            console.print(f"[bold]demo:[/bold] {name} ...")
            t0 = time.perf_counter()
            try:
                stage(ctx)
                status = "ok"
            except Exception as exc:  # a stage failure is reported, the others still run
                status = f"FAILED: {type(exc).__name__}: {exc}"
                failures.append(name)
                (out / f"error-{name}.txt").write_text(traceback.format_exc())
            seconds = time.perf_counter() - t0
            per_s = rates(stage_work(sizes, name), seconds) if status == "ok" else {}
            timings.append(
                {
                    "stage": name,
                    "seconds": round(seconds, 1),
                    "throughput": format_rates(per_s),
                    "status": status,
                }
            )
            ctx.metrics[f"seconds_{name}"] = round(seconds, 1)
            for unit, r in per_s.items():
                ctx.metrics[f"rate_{name}_{unit}_per_s"] = r
            console.print(f"      {status} ({timings[-1]['seconds']} s{_rate(per_s)})")
            _write_partial(out, ctx.metrics, timings, time.perf_counter() - t_all)
    total = time.perf_counter() - t_all
    ctx.metrics["demo_seconds"] = round(total, 1)
    report.heading("Stages")
    report.table(timings)
    report.heading("Metrics (against the simulator's ground truth)")
    report.table(ctx.metrics)
    (out / "metrics.json").write_text(json.dumps(ctx.metrics, indent=2, sort_keys=True))
    (out / PARTIAL).unlink(missing_ok=True)
    report.write(out / "report.html")
    table = Table(title="cryoflow demo")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in ctx.metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)
    console.print(f"report: {out / 'report.html'}   metrics: {out / 'metrics.json'}")
    if failures:
        console.print(f"[red]demo: stages failed: {', '.join(failures)}[/red]")
    return not failures


def _rate(per_s: dict[str, float]) -> str:
    return f", {format_rates(per_s)}" if per_s else ""


def _write_partial(
    out: Path, metrics: dict[str, Any], timings: list[dict[str, Any]], elapsed: float
) -> None:
    """The figures and stage timings so far, replaced whole after every stage."""
    tmp = out / f".{PARTIAL}.tmp"
    body = {"elapsed_seconds": round(elapsed, 1), "stages": timings, "metrics": metrics}
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str))
    tmp.replace(out / PARTIAL)
