"""Speed and memory of ``cmrseg-import-dicom`` on synthetic scanner-like series.

The series come from the test factory (``tests/dicom_factory.py``): 3 short-axis slices x 8
echoes of 192 x 256 16-bit pixels per subject, written rotated by 90 degrees (so every slice is
reoriented on import), one file per image. Each import runs the command's ``main`` in its own
process, so its peak resident memory (``ru_maxrss``) and its wall time, interpreter start
included, are measured alone. The baseline in the same run is reading the same files' pixel
data with pydicom alone (``dcmread(...).pixel_array``), the least any importer has to do.

    python benchmarks/bench_dicom_import.py [--subjects 1 10 25 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dicom_factory import Patient, write_series


def write_cohort(root: Path, n_subjects: int, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, n_subjects):
        patient = Patient(patient_id=f"PAT{i:04d}", patient_name=f"Doe^Subject{i:04d}")
        write_series(root / f"p{i:04d}", patient, rng, rows=192, cols=256, view="rot90")


_CHILD = (
    "import resource, sys\n"
    "from cmrseg.cli.import_dicom import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


def run_import(root: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one import in a fresh process."""
    wall = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - wall, int(done.stdout.split()[-1]) / 1024


def pydicom_baseline(root: Path) -> float:
    wall = time.perf_counter()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        pydicom.dcmread(path).pixel_array  # noqa: B018
    return time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[1, 10, 25, 50])
    parser.add_argument("--keep", type=Path, default=None, help="write the folders here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        root = work / "dicom"
        written = 0
        print("subjects  files  write_s  import_s  pydicom_read_s  ratio  peak_rss_MiB")
        for n in sorted(args.subjects):
            t = time.perf_counter()
            write_cohort(root, n, start=written)
            write_s, written = time.perf_counter() - t, n
            baseline = pydicom_baseline(root)
            wall, peak = run_import(root, work / f"out{n}.h5")
            n_files = sum(1 for p in root.rglob("*") if p.is_file())
            print(
                f"{n:8d}  {n_files:5d}  {write_s:7.1f}  {wall:8.2f}  {baseline:14.2f}  "
                f"{wall / baseline:5.2f}  {peak:12.0f}"
            )


if __name__ == "__main__":
    main()
