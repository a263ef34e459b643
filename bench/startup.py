"""Start-up time and resident memory of a web process, against a baseline revision.

A web worker (gunicorn, runserver) pays this at every start: ``django.setup()``, the
URLconf and the admin's registrations. Each run is a fresh interpreter; the tree at
``--baseline`` (default: none) is exported with ``git archive`` and measured in the
same run, interleaved with the working tree, so that both see the same machine.

    python bench/startup.py                      # the working tree, 3 runs
    python bench/startup.py --baseline ee31f05   # and the tree before the torch-free split

Prints each run, then per tree the median seconds, the resident memory and whether
torch was loaded; the last line is the ratio of the medians (baseline / working tree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, os, sys, time
t0 = time.perf_counter()
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns
from django.contrib import admin
admin.autodiscover()
seconds = time.perf_counter() - t0
status = open("/proc/self/status").read()
rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
heavy = sorted(m for m in ("torch", "timm", "statsmodels", "sklearn", "matplotlib") if m in sys.modules)
print(json.dumps({"seconds": seconds, "rss_mib": rss, "heavy": heavy}))
"""


def measure(tree: Path, data_dir: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "CELERY_", "READERSTUDY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="readerstudy.settings",
        READERSTUDY_DATA_DIR=data_dir,
        PYTHONPATH=str(tree),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the probe failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(revision: str, folder: Path) -> Path:
    archive = folder / "baseline.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", revision], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree", filter="data")
    return folder / "tree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to measure beside the working tree")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="readerstudy-startup-") as tmp:
        trees = {"working tree": ROOT}
        if args.baseline:
            trees = {f"baseline {args.baseline}": export(args.baseline, Path(tmp)), **trees}
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for run in range(args.runs):
            for name, tree in trees.items():
                result = measure(tree, str(Path(tmp) / "data"))
                results[name].append(result)
                print(
                    f"run {run + 1} {name}: {result['seconds']:.2f} s, "
                    f"{result['rss_mib']:.0f} MiB, loaded: {', '.join(result['heavy']) or '-'}"
                )
        medians = {}
        for name, rows in results.items():
            medians[name] = statistics.median(r["seconds"] for r in rows)
            rss = statistics.median(r["rss_mib"] for r in rows)
            torch = any("torch" in r["heavy"] for r in rows)
            print(f"{name}: median {medians[name]:.2f} s, {rss:.0f} MiB, torch loaded: {torch}")
        if args.baseline:
            base, now = medians[f"baseline {args.baseline}"], medians["working tree"]
            print(f"ratio {base / now:.1f} (baseline / working tree start-up time)")


if __name__ == "__main__":
    main()
