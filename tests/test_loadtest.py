"""The load test's driver, at a tiny scale: the whole path (fresh database, seeding,
bin/production, the ceiling, saturation and the peak under locust, counting) works,
reports its goals and finds no lost answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import instance_env, service_missing

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/14"  # the load test's own Redis database


def _pg_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres", "pgsql")):
        return url
    return os.environ.get("PG_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _require(name: str, url: str, probe: Callable[[], object]) -> None:
    """Skip when a service is down, except where services are required (CI,
    `make test-postgres`): there it fails."""
    try:
        probe()
    except Exception as exc:
        service_missing(f"{name} at {url} is not reachable: {exc}")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
# The driver makes its own PostgreSQL database whatever the pass: run it once, there.
@pytest.mark.postgres_only
def test_a_tiny_study_under_load_loses_no_answer(tmp_path):
    import psycopg
    import redis

    pg_url = _pg_url()
    _require("PostgreSQL", pg_url, lambda: psycopg.connect(pg_url, connect_timeout=2).close())
    _require("Redis", REDIS_URL, redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping)
    command = [
        sys.executable,
        str(ROOT / "bench" / "loadtest.py"),
        "--readers", "4",
        "--cases", "6",
        "--saturation-cases", "6",  # the whole study: these readers finish it
        "--peak-readers", "3",
        "--peak-cases", "2",
        "--think-seconds", "0.2",
        "--peak-spawn-rate", "3",
        "--web-processes", "2",
        "--spawn-rate", "4",
        "--ceiling-seconds", "3",
        "--time-limit", "120",
        "--pg-url", pg_url,
        "--database", "readerstudy_load_test",
        "--redis-url", REDIS_URL,
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=instance_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the driver stops the stack on its way out
        output, _ = process.communicate(timeout=90)
        pytest.fail(f"the load test did not finish in time:\n{output}")
    assert process.returncode == 0, output
    lines = output.strip().splitlines()
    # 4 readers x 6 cases without a pause, then 3 readers x 2 cases
    assert re.fullmatch(r"answers 30/30 errors 0 lost 0 seconds [0-9.]+", lines[-1]), output
    goals = "\n".join(lines[lines.index("goals:") :])
    assert re.search(r"start: stack up in [0-9.]+ s; goal < 30 s: (met|NOT met)", goals), output
    assert re.search(r"saturation: [0-9.]+ requests/s .* = [0-9.]+ of the /health/", goals)
    assert re.search(r"peak: 3 readers x 2 cases, 0.2 s per case: p95 case page \d+ ms", goals)
