"""Mutation testing of ``cryoflow/kernels`` and ``cryoflow/io`` with mutmut, module by module.

Not part of the default test suite (it runs the module's tests once per mutant). For every
module in :data:`MODULES` it copies the package and the tests into a scratch folder, writes a
``[mutmut]`` section that mutates only that module and runs only that module's tests, runs
``mutmut run``, and reads each mutant's outcome with ``mutmut results --all``. Prints one line
per module (mutants, killed, survived, timeouts, kill rate) and writes the surviving mutants'
names and diffs to ``OUT/<module>.survivors.txt``.

    nice -n 19 python benchmarks/mutation/run_mutmut.py [--out DIR] [--budget-min 120]
        [--only kernels/iou.py io/angles.py] [--max-children 2] [--module-min 8]

``--module-min`` time-boxes each module: when it ends, mutmut is stopped and the mutants it
finished are counted (the line says how many were not checked).

The whole run stops starting new modules once ``--budget-min`` minutes have passed. The kill
rate counts killed and timed-out mutants as caught; "no tests" mutants (code no selected test
reaches) count as survivors.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# module (below cryoflow/) -> the tests that exercise it
_STORE_TESTS = [
    "tests/io/test_store.py",
    "tests/io/test_lineage.py",
    "tests/io/test_checksums.py",
    "tests/io/test_metadata_safety.py",
    "tests/io/test_verify_partial.py",
]
MODULES: dict[str, list[str]] = {
    "kernels/iou.py": ["tests/kernels/test_metrics_by_hand.py", "tests/kernels/test_components.py"],
    "kernels/threshold.py": [
        "tests/graph/test_threshold.py",
        "tests/kernels/test_threshold_oracle.py",
        "tests/property/test_threshold_property.py",
    ],
    "kernels/backproject.py": [
        "tests/kernels/test_projector_oracle.py",
        "tests/graph/test_backproject.py",
    ],
    "kernels/project.py": ["tests/kernels/test_projector_oracle.py", "tests/graph/test_project.py"],
    "kernels/ramp.py": ["tests/kernels/test_ramp.py", "tests/kernels/test_ramp_oracle.py"],
    "kernels/wedge.py": [
        "tests/kernels/test_wedge.py",
        "tests/kernels/test_wedge_shapes.py",
        "tests/kernels/test_wedge_peers.py",
        "tests/kernels/test_wedge_oracle.py",
    ],
    # the structure half's kernels and particle files
    "kernels/fsc.py": ["tests/kernels/test_fsc.py", "tests/kernels/test_fsc_oracle.py"],
    "kernels/extract.py": [
        "tests/kernels/test_extract_kernel.py",
        "tests/kernels/test_extract_oracle.py",
    ],
    "kernels/peaks.py": [
        "tests/kernels/test_peaks_kernel.py",
        "tests/kernels/test_peaks_oracle.py",
    ],
    "io/star.py": [
        "tests/io/test_particle_files.py",
        "tests/io/test_particle_sets.py",
        "tests/io/test_star_centred.py",
    ],
    "io/particles.py": ["tests/io/test_particle_files.py", "tests/io/test_particle_sets.py"],
    "kernels/edges.py": ["tests/kernels/test_edges.py"],
    "kernels/components.py": ["tests/kernels/test_components.py"],
    "kernels/boxes.py": ["tests/kernels/test_components.py"],
    "kernels/lift.py": ["tests/pipelines/stages/test_lift.py"],
    "kernels/combine.py": ["tests/pipelines/stages/test_annotate.py"],
    "io/angles.py": [
        "tests/io/test_angles.py",
        "tests/io/test_headers_by_hand.py",
        "tests/io/test_angle_file_errors.py",
    ],
    "io/mrc.py": [
        "tests/io/test_mrc.py",
        "tests/io/test_headers_by_hand.py",
        "tests/io/test_outputs_read_back.py",
    ],
    "io/names.py": ["tests/io/test_store.py", "tests/io/test_name_messages.py"],
    "io/boxes.py": ["tests/io/test_outputs_read_back.py", "tests/kernels/test_components.py"],
    "io/safety.py": ["tests/io/test_safety_rules.py", "tests/io/test_metadata_safety.py"],
    "io/chunks.py": ["tests/io/test_checksums.py", "tests/io/test_chunk_locating.py"],
    "io/verify.py": [
        "tests/io/test_checksums.py",
        "tests/io/test_verify_partial.py",
        "tests/io/test_store.py",
    ],
    "io/writer.py": ["tests/io/test_store.py", "tests/io/test_checksums.py"],
    "io/nodes.py": _STORE_TESTS,
    "io/layout.py": _STORE_TESTS,
    "io/store.py": _STORE_TESTS,
    "io/results.py": _STORE_TESTS,
    "io/lineage.py": ["tests/io/test_lineage.py"],
    "io/ome.py": ["tests/io/test_store.py"],
    "io/provenance.py": ["tests/io/test_store.py", "tests/io/test_lineage.py"],
}

_STATUS = re.compile(
    r"^\s*(\S+):\s*(killed|survived|timeout|no tests|suspicious|skipped|"
    r"segfault|caught by type check|not checked|check was interrupted by user)\s*$"
)


def run_module(
    module: str,
    tests: list[str],
    out: Path,
    max_children: int,
    limit_s: float,
    show_max: int = 40,
) -> dict[str, int] | None:
    """Mutate one module; returns counts per outcome (None when mutmut failed to run)."""
    with tempfile.TemporaryDirectory(prefix="mutmut-") as tmp:
        work = Path(tmp)
        shutil.copytree(
            REPO / "cryoflow", work / "cryoflow", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(
            REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")
        selection = "\n    ".join(tests)
        (work / "setup.cfg").write_text(
            "[mutmut]\nsource_paths = cryoflow\n"
            f"only_mutate = cryoflow/{module}\n"
            f"pytest_add_cli_args_test_selection =\n    {selection}\n"
            "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not slow and not fault and not gpu_test\n"
            "process_isolation = forkserver\n"
            "use_git_change_detection = false\n"
        )
        # pyproject.toml holds no [tool.mutmut], so mutmut reads setup.cfg
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
        mutmut = [sys.executable, "-m", "mutmut"]
        t0 = time.time()
        log = (out / f"{_slug(module)}.log").open("w")
        run = subprocess.Popen(
            [*mutmut, "run", "--max-children", str(max_children)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        partial = False
        try:
            run.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            # the time box: stop mutmut and its children, then count what it recorded (mutmut
            # saves each mutant's outcome as it comes; the rest read "not checked")
            os.killpg(run.pid, signal.SIGTERM)
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
            partial = True
            print(f"{module}: stopped after {limit_s / 60:.1f} min (time box)", flush=True)
        log.close()
        if run.returncode != 0 and not partial:
            print(
                f"{module}: mutmut failed (rc {run.returncode}); see {_slug(module)}.log",
                flush=True,
            )
            return None
        results = subprocess.run(
            [*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
        )
        # every mutant's outcome, to compare two runs over the same mutants
        (out / f"{_slug(module)}.results.txt").write_text(results.stdout)
        counts: dict[str, int] = {}
        survivors = []
        no_tests: set[str] = set()
        for line in results.stdout.splitlines():
            m = _STATUS.match(line)
            if not m:
                continue
            counts[m.group(2)] = counts.get(m.group(2), 0) + 1
            if m.group(2) in ("survived", "no tests"):
                survivors.append(m.group(1))
            if m.group(2) == "no tests":
                no_tests.add(m.group(1))
        diffs = []
        # one `mutmut show` costs a process start (seconds on a loaded machine): show the
        # first --show survivors that some test reached, and name the rest
        reached = [n for n in survivors if n not in no_tests]
        for name in reached[:show_max]:
            show = subprocess.run(
                [*mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True
            )
            diffs.append(f"# {name}\n{show.stdout.strip()}\n")
        rest = reached[show_max:] + sorted(no_tests)
        if rest:
            diffs.append("# not shown (or reached by no selected test):\n" + "\n".join(rest) + "\n")
        (out / f"{_slug(module)}.survivors.txt").write_text("\n".join(diffs))
        counts["seconds"] = int(time.time() - t0)
        counts["partial"] = int(partial)
        return counts


def _slug(module: str) -> str:
    return module.replace("/", "_").removesuffix(".py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/mutation/results")
    parser.add_argument("--budget-min", type=float, default=120.0)
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--show", type=int, default=40, help="survivor diffs written per module")
    parser.add_argument(
        "--module-min", type=float, default=None, help="time box per module (partial counts)"
    )
    parser.add_argument("--only", nargs="*", help="modules below cryoflow/, e.g. io/angles.py")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modules = args.only or list(MODULES)
    start = time.time()
    total_caught = total = 0
    print(
        f"{'module':24s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} "
        f"{'no-tests':>8s} {'kill %':>6s} {'s':>5s}",
        flush=True,
    )
    for module in modules:
        left = args.budget_min * 60 - (time.time() - start)
        if left < 60:
            print(f"{module}: not run (budget of {args.budget_min:.0f} min spent)", flush=True)
            continue
        box = left if args.module_min is None else min(left, args.module_min * 60)
        counts = run_module(module, MODULES[module], args.out, args.max_children, box, args.show)
        if counts is None:
            continue
        caught = counts.get("killed", 0) + counts.get("timeout", 0)
        n = sum(
            v
            for k, v in counts.items()
            if k not in ("seconds", "partial", "skipped", "not checked")
        )
        total_caught += caught
        total += n
        rate = 100.0 * caught / n if n else float("nan")
        print(
            f"{module:24s} {n:7d} {counts.get('killed', 0):6d} {counts.get('timeout', 0):7d} "
            f"{counts.get('survived', 0):8d} {counts.get('no tests', 0):8d} {rate:6.1f} "
            f"{counts['seconds']:5d}"
            + (
                f"  partial: {counts.get('not checked', 0)} not checked"
                if counts["partial"]
                else ""
            ),
            flush=True,
        )
    if total:
        print(
            f"{'all':24s} {total:7d} caught {total_caught} ({100.0 * total_caught / total:.1f} %)"
        )


if __name__ == "__main__":
    main()
