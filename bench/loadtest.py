"""Replay a whole reader study against the production-shaped stack; lose no answer.

Creates a fresh PostgreSQL database (``--database``, dropped first if it exists) and
flushes one Redis database, migrates, and seeds through the platform's own code: a study
of ``--cases`` generated cases imported by the real importer (the demo's synthetic
images, the demo's options: shuffled order, both images, confidence asked) and
``--readers`` accounts ``loadreader-NNN``, enrolled with consent and a complete profile,
so their first page is a case. Then it starts the stack with ``bin/production``
(gunicorn with ``--web-processes`` processes and one Celery worker) and runs locust
(``bench/locustfile.py``) twice on it: ``Health``, the bare JSON view ``/health/``, for
``--ceiling-seconds`` with as many users (the ceiling), then ``Reader``: every reader
logs in and answers every case (case page, both images, submit) without pausing, until
the last one is done. Finally it stops the stack and checks that the answers in the
database, the submissions the server acknowledged and readers x cases are one number,
that every reader finished and that locust saw no failure.

Prints the machine, throughput and p50/p95/p99 latencies per kind of request next to the
ceiling; the last line is ``answers <stored>/<expected> errors <n> lost <n> seconds
<study wall time>``. Exits non-zero when a check fails. Locust's logs and results and the
stack's log are kept in ``--out``. Run from the repository root:
``python bench/loadtest.py [--readers 280 --cases 200 --web-processes 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY_SLUG = "load"
KINDS = ("case page", "image", "submit", "login", "login page", "done page")
# Variables of the platform itself: the stack gets only the ones set here.
OWN_PREFIXES = ("DJANGO_", "DATABASE_URL", "CELERY_", "READERSTUDY_", "WEB_CONCURRENCY", "BIND")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=280)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--web-processes", type=int, default=3, help="gunicorn processes")
    parser.add_argument("--spawn-rate", type=float, default=10, help="readers starting per second")
    parser.add_argument("--ceiling-seconds", type=int, default=20, help="the /health/ run")
    parser.add_argument(
        "--time-limit", type=int, default=3600, help="seconds before the study run is stopped"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PG_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the database may be created and dropped",
    )
    parser.add_argument("--database", default="readerstudy_load", help="recreated on each run")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/14", help="flushed at the start"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "loadtest")
    return parser.parse_args()


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs, {model}"


def fresh_database(pg_url: str, name: str) -> tuple[str, str]:
    """Drop and create database ``name``; return its URL and the server's version."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = connection.execute("SHOW server_version").fetchone()[0]
    return urlsplit(pg_url)._replace(path=f"/{name}").geturl(), version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(*, n_cases: int, n_readers: int, password: str, data_dir: Path) -> list[str]:
    """Migrate, import the study, open it, and create the enrolled readers; return their
    user names."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connections

    from cases.importing import cases_import
    from cases.models import Study
    from cases.services import enrolment_create, profile_save
    from demo.images import DEMO_CHOICES
    from demo.services import demo_cases, write_demo_bundle

    call_command("migrate", verbosity=0)
    bundle = data_dir / "bundle"
    per_class = math.ceil(n_cases / len(DEMO_CHOICES))
    write_demo_bundle(bundle, demo_cases(seed=0, per_class=per_class)[:n_cases], seed=0)
    study = cases_import(slug=STUDY_SLUG, source=bundle).study
    study.status = Study.Status.OPEN
    study.save(update_fields=["status"])
    # One hash for all: hashing is deliberately slow, and the logins still pay it in full.
    hashed = make_password(password)
    names = [f"loadreader-{i + 1:03d}" for i in range(n_readers)]
    for i, name in enumerate(names):
        user = get_user_model().objects.create(username=name, password=hashed)
        profile_save(user=user, level="attending", years_in_dermatology=8)
        enrolment_create(study=study, reader=user, seed=i, consent=True)
    connections.close_all()
    return names


def start_stack(env: dict[str, str], log: Path) -> subprocess.Popen:
    """``bin/production`` in its own process group, so that all of it can be stopped."""
    with open(log, "w") as handle:
        return subprocess.Popen(
            [str(ROOT / "bin" / "production")],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(url: str, stack: subprocess.Popen, *, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"the stack exited with {stack.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen | None, *, grace: float) -> int | None:
    """SIGTERM the process (``bin/production`` stops its children itself), then SIGKILL
    whatever is left of its process group."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


@dataclass(frozen=True)
class LocustRun:
    code: int
    result: dict  # what bench/locustfile.py wrote: counts, times, stats per request name
    seconds: float  # the locust process, start-up included


def run_locust(
    user_class: str,
    *,
    users: int,
    spawn_rate: float,
    seconds: int,
    host: str,
    out: Path,
    env: dict[str, str],
    running: list[subprocess.Popen],
) -> LocustRun:
    """Run locust headless until it quits (all readers done, or after ``seconds``); its
    log goes to ``out/<class>.log``, its counts and statistics to ``out/<class>.json``."""
    name = user_class.lower()
    result_file = out / f"{name}.json"
    result_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"),
        "--headless", "--users", str(users), "--spawn-rate", str(spawn_rate),
        "--run-time", f"{seconds}s", "--stop-timeout", "10", "--host", host,
        "--only-summary", user_class,
    ]  # fmt: skip
    started = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, "LOADTEST_RESULT": str(result_file)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        running.append(process)
        code = process.wait()
    result = json.loads(result_file.read_text()) if result_file.exists() else {"stats": {}}
    return LocustRun(code=code, result=result, seconds=time.perf_counter() - started)


def stats_line(label: str, entry: dict[str, float] | None) -> str:
    if entry is None:
        return f"{label:<18}{'-':>10}"
    return (
        f"{label:<18}{entry['requests']:>10}{entry['failures']:>9}{entry['p50']:>9.0f}"
        f"{entry['p95']:>9.0f}{entry['p99']:>9.0f}{entry['per_second']:>10.1f}"
    )


def count_answers() -> tuple[int, int]:
    """Answers stored for the study, and readers whose enrolment is finished."""
    from cases.models import Answer, Enrolment

    stored = Answer.objects.filter(enrolment__study__slug=STUDY_SLUG).count()
    finished = Enrolment.objects.filter(
        study__slug=STUDY_SLUG,
        finished_at__isnull=False,
        reader__username__startswith="loadreader-",
    ).count()
    return stored, finished


def main() -> int:
    args = parse_args()
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, through the finally that stops the stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    stack: subprocess.Popen | None = None
    running: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="readerstudy-load-") as tmp:
        data_dir = Path(tmp)
        database_url, pg_version = fresh_database(args.pg_url, args.database)
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        port = free_port()
        host = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(
            {
                "PYTHON": sys.executable,
                "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "DJANGO_SECURE": "0",  # plain HTTP on loopback
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": args.redis_url,
                "READERSTUDY_DATA_DIR": str(data_dir),
                "WEB_CONCURRENCY": str(args.web_processes),
                "CELERY_WORKERS": "1",
                "BIND": f"127.0.0.1:{port}",
            }
        )
        # Seeding and counting in this process use the same settings as the stack.
        os.environ.clear()
        os.environ.update(env)
        started = time.perf_counter()
        password = secrets.token_urlsafe(12)
        readers = seed(
            n_cases=args.cases, n_readers=args.readers, password=password, data_dir=data_dir
        )
        print(
            f"seeded {args.cases} cases and {args.readers} readers in "
            f"{time.perf_counter() - started:.1f} s (PostgreSQL {pg_version}, "
            f"database {args.database})",
            flush=True,
        )
        plan = data_dir / "plan.json"
        plan.write_text(json.dumps({"study": STUDY_SLUG, "password": password, "readers": readers}))
        locust = partial(
            run_locust,
            users=args.readers,
            host=host,
            out=args.out,
            running=running,
            env={**env, "LOADTEST_PLAN": str(plan)},
        )
        try:
            started = time.perf_counter()
            stack = start_stack(env, args.out / "stack.log")
            wait_healthy(f"{host}/health/", stack)
            print(
                f"stack up in {time.perf_counter() - started:.1f} s: {args.web_processes} web "
                "processes, 1 Celery worker",
                flush=True,
            )
            ceiling = locust("Health", spawn_rate=args.readers, seconds=args.ceiling_seconds)
            print(f"ceiling: {args.ceiling_seconds} s of /health/", flush=True)
            study = locust("Reader", spawn_rate=args.spawn_rate, seconds=args.time_limit)
        finally:
            for process in running:
                stop(process, grace=15)
            stack_code = stop(stack, grace=60)
        stored, finished = count_answers()
    return report(
        args, ceiling=ceiling, study=study, stack_code=stack_code, stored=stored, finished=finished
    )


def report(
    args: argparse.Namespace,
    *,
    ceiling: LocustRun,
    study: LocustRun,
    stack_code: int | None,
    stored: int,
    finished: int,
) -> int:
    """Print the figures and the checks; return the exit status."""
    expected = args.readers * args.cases
    acknowledged = study.result.get("acknowledged", 0)
    if study.result.get("started_at") and study.result.get("ended_at"):
        seconds = study.result["ended_at"] - study.result["started_at"]
    else:
        seconds = study.seconds
    stats, ceiling_stats = study.result["stats"], ceiling.result["stats"]
    errors = sum(
        run.result["stats"].get("all", {}).get("failures", 0) + run.result.get("exceptions", 0)
        for run in (ceiling, study)
    )
    problems = [
        f"{what} exited with {code}"
        for what, code in (
            ("locust (ceiling)", ceiling.code),
            ("locust (study)", study.code),
            ("the stack", stack_code),
        )
        if code != 0
    ]
    if not stored == acknowledged == expected:
        problems.append(
            f"answers stored {stored}, acknowledged {acknowledged}, expected {expected}"
        )
    if finished != args.readers:
        problems.append(f"{finished} of {args.readers} readers finished")

    print(
        f"\nstudy: {args.readers} readers x {args.cases} cases, {args.web_processes} web "
        f"processes, readers starting at {args.spawn_rate:g}/s, no pause between requests"
    )
    print(
        f"{'':<18}{'requests':>10}{'failed':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>10}"
    )
    for kind in KINDS:
        print(stats_line(kind, stats.get(kind)))
    if "unusable page" in stats:
        print(stats_line("unusable page", stats["unusable page"]))
    print(stats_line("all (study)", stats.get("all")))
    print(stats_line("health (ceiling)", ceiling_stats.get("health")))
    requests = stats.get("all", {}).get("requests", 0)
    print(
        f"throughput: {acknowledged / seconds:.1f} answers/s, {requests / seconds:.1f} "
        f"requests/s over {seconds:.1f} s from the first login to the last answer "
        f"(ceiling: {ceiling_stats.get('all', {}).get('per_second', 0):.1f} requests/s)"
    )
    if "CPU usage" in (args.out / "reader.log").read_text():
        print("note: locust warned that its own CPU was saturated (see reader.log)")
    for problem in problems:
        print(f"FAILED: {problem}")
    print(
        f"answers {stored}/{expected} errors {errors} lost {max(acknowledged - stored, 0)} "
        f"seconds {seconds:.1f}"
    )
    return 1 if problems or errors else 0


if __name__ == "__main__":
    sys.exit(main())
