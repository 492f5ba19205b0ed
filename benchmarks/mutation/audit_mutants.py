"""The six hand-made bugs of the test-quality audit that the suite once missed, each put back
in a scratch copy of the package and run against the tests written to kill it.

    nice -n 10 python benchmarks/mutation/audit_mutants.py

Prints one line per bug: KILLED (and the failing tests) or SURVIVED. The working tree is never
modified. The bugs' sources change over time: a bug whose original line is gone is reported as
"not applied" (update its entry).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# (label, file, original text, bug, killer tests)
BUGS = [
    (
        "mask_iou: union = max(|a|, |b|)",
        "cryoflow/kernels/iou.py",
        "    union = np.count_nonzero(a | b)\n",
        "    union = max(np.count_nonzero(a), np.count_nonzero(b))\n",
        "tests/kernels/test_metrics_by_hand.py",
    ),
    (
        "match_boxes: zero-IoU pairs accepted",
        "cryoflow/kernels/iou.py",
        "keep = iou[rows, cols] > 0",
        "keep = iou[rows, cols] >= 0",
        "tests/kernels/test_metrics_by_hand.py",
    ),
    (
        "read_mrc_header: z and x cell sizes and grid swapped",
        "cryoflow/io/mrc.py",
        "    cella = (float(header.cella.z), float(header.cella.y), float(header.cella.x))\n"
        "    grid = (int(header.mz), int(header.my), int(header.mx))",
        "    cella = (float(header.cella.x), float(header.cella.y), float(header.cella.z))\n"
        "    grid = (int(header.mx), int(header.my), int(header.mz))",
        "tests/io/test_headers_by_hand.py",
    ),
    (
        "_parse_angle: exactly 90 degrees refused",
        "cryoflow/io/angles.py",
        "if abs(value) > 90.0:",
        "if abs(value) >= 90.0:",
        "tests/io/test_headers_by_hand.py",
    ),
    (
        "read_mdoc: last PixelSpacing instead of the first",
        "cryoflow/io/angles.py",
        'elif key == "PixelSpacing" and pixel is None:',
        'elif key == "PixelSpacing":',
        "tests/io/test_headers_by_hand.py",
    ),
    (
        "bin_image: sums instead of averaging",
        "cryoflow/kernels/binning.py",
        ".mean(axis=(2, 4), dtype=np.float32)",
        ".sum(axis=(2, 4), dtype=np.float32)",
        "tests/kernels/test_bin_image.py",
    ),
]


def main() -> int:
    survived = 0
    for label, path, original, bug, tests in BUGS:
        with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
            work = Path(tmp)
            for part in ("cryoflow", "tests"):
                shutil.copytree(
                    REPO / part, work / part, ignore=shutil.ignore_patterns("__pycache__")
                )
            shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")
            target = work / path
            source = target.read_text()
            if source.count(original) != 1:
                print(f"{label}: not applied (the original line is gone from {path})")
                continue
            target.write_text(source.replace(original, bug))
            env = {**os.environ, "PYTHONPATH": str(work), "OMP_NUM_THREADS": "1"}
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
            )
            failed = [
                ln.split(" - ")[0][7:] for ln in run.stdout.splitlines() if ln.startswith("FAILED ")
            ]
            verdict = "KILLED" if run.returncode == 1 and failed else "SURVIVED"
            survived += verdict == "SURVIVED"
            print(f"{label}: {verdict} ({len(failed)} failing: {', '.join(failed[:3])})")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
