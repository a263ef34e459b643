"""Load the production-shaped stack with a reader study; lose no answer.

Creates a fresh PostgreSQL database (``--database``, dropped first if it exists) and
flushes one Redis database, migrates, and seeds through the platform's own code: a study
of ``--cases`` generated cases imported by the real importer (the demo's synthetic
images, the demo's options: shuffled order, both images, confidence asked) and two
groups of accounts ``loadreader-NNN`` and ``peakreader-NNN``, enrolled with consent and
a complete profile, so that their first page is a case. Then it starts the stack with
``bin/production`` (gunicorn with ``--web-processes`` processes, one Celery worker,
Redis as the broker and the session cache), timing its start, and runs locust
(``bench/locustfile.py``) three times on it:

1. the ceiling: ``Health``, the bare JSON view ``/health/``, for ``--ceiling-seconds``
   with as many users as ``--readers``;
2. saturation: ``--readers`` readers log in, then all at once answer
   ``--saturation-cases`` cases each (case page, both images, submit) without pausing;
   the study's requests per second while every one of them is answering, as a share of
   the ceiling;
3. a realistic peak: ``--peak-readers`` readers arrive at ``--peak-spawn-rate`` a
   second, log in and answer ``--peak-cases`` cases each, looking at each case for
   ``--think-seconds`` on average before submitting; the latencies of the case page and
   the submit.

Finally it stops the stack and checks, per run, that the answers in the database, the
submissions the server acknowledged and readers x cases are one number, and that
locust saw no failure. Prints the machine, each run's latencies, and the goals: the
stack up in under 30 s, saturation at 0.35 of the ceiling or more, the peak's p95 for
the case page and the submit under 250 ms, no error, no lost answer. The last line is
``answers <stored>/<expected> errors <n> lost <n> seconds <wall time of the runs>``.
Exits non-zero when a check fails (a goal not met is reported, not a failure). Locust's
logs and results and the stack's log are kept in ``--out``. Run from the repository
root: ``python bench/loadtest.py [--readers 280 --peak-readers 280 --web-processes 3]``.
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
OWN_PREFIXES = (
    "DJANGO_",
    "DATABASE_URL",
    "CELERY_",
    "CACHE_URL",
    "READERSTUDY_",
    "WEB_CONCURRENCY",
    "BIND",
)
# The goals (issue 13): the stack up in under START_GOAL seconds; while readers answer
# without pausing, the study's requests per second at SATURATION_GOAL of the /health/
# ceiling or more; at the realistic peak, the p95 of the case page and of the submit
# under PEAK_P95_GOAL ms.
START_GOAL, SATURATION_GOAL, PEAK_P95_GOAL = 30.0, 0.35, 250.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=280, help="saturation: readers")
    parser.add_argument("--saturation-cases", type=int, default=20, help="each, no pause")
    parser.add_argument("--peak-readers", type=int, default=280, help="the peak: readers")
    parser.add_argument("--peak-cases", type=int, default=20, help="the peak: cases each")
    parser.add_argument(
        "--think-seconds", type=float, default=8, help="the peak: seconds on a case, mean"
    )
    parser.add_argument(
        "--peak-spawn-rate", type=float, default=5, help="the peak: readers arriving a second"
    )
    parser.add_argument("--cases", type=int, default=200, help="cases in the study")
    parser.add_argument("--web-processes", type=int, default=3, help="gunicorn processes")
    parser.add_argument(
        "--spawn-rate", type=float, default=10, help="saturation: readers logging in a second"
    )
    parser.add_argument("--ceiling-seconds", type=int, default=20, help="the /health/ run")
    parser.add_argument(
        "--time-limit", type=int, default=1800, help="seconds before a run is stopped"
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


def seed(*, n_cases: int, groups: dict[str, int], password: str, data_dir: Path) -> dict:
    """Migrate, import the study, open it, and create the enrolled readers: ``groups``
    maps a user name prefix to how many; return their user names by prefix."""
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
    names = {prefix: [f"{prefix}-{i + 1:03d}" for i in range(n)] for prefix, n in groups.items()}
    for i, name in enumerate(name for group in names.values() for name in group):
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
    name: str | None = None,
    plan: Path | None = None,
) -> LocustRun:
    """Run locust headless until it quits (all readers done, or after ``seconds``), the
    readers following ``plan``; its log goes to ``out/<name>.log`` (``name``: the user
    class's by default), its counts and statistics to ``out/<name>.json``."""
    name = name or user_class.lower()
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
            env={**env, "LOADTEST_RESULT": str(result_file)}
            | ({"LOADTEST_PLAN": str(plan)} if plan else {}),
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


def count_answers(prefix: str) -> tuple[int, list[int]]:
    """Answers stored by the readers whose user names start with ``prefix``, and how
    many each of them has (their counts, sorted)."""
    from django.db.models import Count

    from cases.models import Enrolment

    counts = sorted(
        Enrolment.objects.filter(study__slug=STUDY_SLUG, reader__username__startswith=prefix)
        .annotate(n=Count("answers"))
        .values_list("n", flat=True)
    )
    return sum(counts), counts


@dataclass(frozen=True)
class Phase:
    """One run of readers: the group of accounts and what each does."""

    name: str  # "saturation" or "peak"
    prefix: str  # the accounts' user name prefix
    readers: int
    cases: int  # answered by each reader
    think: float  # seconds on a case before submitting (mean)
    spawn_rate: float
    together: bool  # answering starts once all are logged in


def main() -> int:
    args = parse_args()
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, through the finally that stops the stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    saturation = Phase(
        name="saturation",
        prefix="loadreader",
        readers=args.readers,
        cases=min(args.saturation_cases, args.cases),
        think=0.0,
        spawn_rate=args.spawn_rate,
        together=True,
    )
    peak = Phase(
        name="peak",
        prefix="peakreader",
        readers=args.peak_readers,
        cases=min(args.peak_cases, args.cases),
        think=args.think_seconds,
        spawn_rate=args.peak_spawn_rate,
        together=False,
    )
    phases = [phase for phase in (saturation, peak) if phase.readers > 0]
    stack: subprocess.Popen | None = None
    running: list[subprocess.Popen] = []
    runs: dict[str, LocustRun] = {}
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
                # Sessions read from Redis (backed by the database), as in production.
                "CACHE_URL": args.redis_url,
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
        names = seed(
            n_cases=args.cases,
            groups={phase.prefix: phase.readers for phase in phases},
            password=password,
            data_dir=data_dir,
        )
        print(
            f"seeded {args.cases} cases and {sum(p.readers for p in phases)} readers in "
            f"{time.perf_counter() - started:.1f} s (PostgreSQL {pg_version}, "
            f"database {args.database})",
            flush=True,
        )
        locust = partial(run_locust, host=host, out=args.out, running=running, env=env)
        try:
            started = time.perf_counter()
            stack = start_stack(env, args.out / "stack.log")
            wait_healthy(f"{host}/health/", stack)
            start_seconds = time.perf_counter() - started
            print(
                f"stack up in {start_seconds:.1f} s: {args.web_processes} web processes, "
                "1 Celery worker",
                flush=True,
            )
            env["LOADTEST_STACK_PGID"] = str(stack.pid)  # its own session: pgid = pid
            ceiling = partial(
                ceiling_run,
                locust,
                users=args.readers or args.peak_readers,
                seconds=args.ceiling_seconds,
                pgid=stack.pid,
            )
            runs["ceiling"] = ceiling(name="health")
            for phase in phases:
                plan = data_dir / f"plan-{phase.name}.json"
                plan.write_text(
                    json.dumps(
                        {
                            "study": STUDY_SLUG,
                            "password": password,
                            "readers": names[phase.prefix],
                            "cases": phase.cases,
                            "think": phase.think,
                            "together": phase.together,
                        }
                    )
                )
                runs[phase.name] = locust(
                    "Reader",
                    users=phase.readers,
                    spawn_rate=phase.spawn_rate,
                    seconds=args.time_limit,
                    name=phase.name,
                    plan=plan,
                )
                print(f"{phase.name}: done in {runs[phase.name].seconds:.1f} s", flush=True)
                if phase.name == "saturation":  # the ceiling again, right after
                    runs["ceiling after"] = ceiling(name="health-after")
        finally:
            for process in running:
                stop(process, grace=15)
            stack_code = stop(stack, grace=60)
        stored = {phase.name: count_answers(f"{phase.prefix}-") for phase in phases}
    return report(
        args,
        phases=phases,
        runs=runs,
        stack_code=stack_code,
        start_seconds=start_seconds,
        stored=stored,
    )


def stack_cpu_seconds(pgid: int) -> float:
    """User and system CPU seconds of the live processes in process group ``pgid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid:  # the fields after "pid (comm)": state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def ceiling_run(locust, *, users: int, seconds: int, pgid: int, name: str) -> LocustRun:
    """``Health`` for ``seconds``; its result gets the stack's CPU seconds meanwhile."""
    before = stack_cpu_seconds(pgid)
    run = locust("Health", users=users, spawn_rate=users, seconds=seconds, name=name)
    run.result["stack_cpu_seconds"] = stack_cpu_seconds(pgid) - before
    print(f"ceiling: {seconds} s of /health/", flush=True)
    return run


def _seconds(run: LocustRun) -> float:
    """From the first login to the last answer, else the whole locust process."""
    if run.result.get("started_at") and run.result.get("ended_at"):
        return run.result["ended_at"] - run.result["started_at"]
    return run.seconds


def _goal(met: bool) -> str:
    return "met" if met else "NOT met"


def report(
    args: argparse.Namespace,
    *,
    phases: list[Phase],
    runs: dict[str, LocustRun],
    stack_code: int | None,
    start_seconds: float,
    stored: dict[str, tuple[int, list[int]]],
) -> int:
    """Print the figures, the goals and the checks; return the exit status."""
    ceilings = [runs[name] for name in ("ceiling", "ceiling after") if name in runs]
    # The mean of the runs before and after saturation: the machine's other work varies.
    rates = [run.result["stats"].get("all", {}).get("per_second", 0.0) for run in ceilings]
    ceiling_rate = sum(rates) / len(rates)
    health_cpu = sum(run.result.get("stack_cpu_seconds", 0.0) for run in ceilings) / max(
        sum(run.result["stats"].get("all", {}).get("requests", 0) for run in ceilings), 1
    )
    errors = sum(
        run.result["stats"].get("all", {}).get("failures", 0) + run.result.get("exceptions", 0)
        for run in runs.values()
    )
    exits = {f"locust ({name})": run.code for name, run in runs.items()}
    exits["the stack"] = stack_code
    problems = [f"{what} exited with {code}" for what, code in exits.items() if code != 0]
    totals = {"expected": 0, "stored": 0, "lost": 0}
    goals = [
        f"start: stack up in {start_seconds:.1f} s; goal < {START_GOAL:g} s: "
        f"{_goal(start_seconds < START_GOAL)}"
    ]
    header = f"{'':<18}{'requests':>10}{'failed':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    for phase in phases:
        run = runs[phase.name]
        stats = run.result["stats"]
        expected = phase.readers * phase.cases
        acknowledged = run.result.get("acknowledged", 0)
        answers, per_reader = stored[phase.name]
        lost = max(acknowledged - answers, 0)
        totals["expected"] += expected
        totals["stored"] += answers
        totals["lost"] += lost
        if not answers == acknowledged == expected:
            problems.append(
                f"{phase.name}: answers stored {answers}, acknowledged {acknowledged}, "
                f"expected {expected}"
            )
        if per_reader and (per_reader[0], per_reader[-1]) != (phase.cases, phase.cases):
            problems.append(
                f"{phase.name}: readers stored {per_reader[0]} to {per_reader[-1]} answers, "
                f"expected {phase.cases} each"
            )
        seconds = _seconds(run)
        pause = f"{phase.think:g} s per case" if phase.think else "no pause"
        start = "all at once after logging in" if phase.together else "as they arrive"
        print(
            f"\n{phase.name}: {phase.readers} readers x {phase.cases} cases, {pause}, "
            f"logging in at {phase.spawn_rate:g}/s, answering {start}; "
            f"{args.web_processes} web processes"
        )
        print(f"{header}{'req/s':>10}")
        for kind in (*KINDS, "unusable page"):
            if kind in stats or kind != "unusable page":
                print(stats_line(kind, stats.get(kind)))
        print(stats_line("all", stats.get("all")))
        print(
            f"{acknowledged / seconds:.1f} answers/s over {seconds:.1f} s from the first "
            "login to the last answer"
        )
        if "CPU usage" in (args.out / f"{phase.name}.log").read_text():
            print("note: locust warned that its own CPU was saturated (see its log)")
        if phase.name == "saturation":
            window = run.result.get("window")
            if window:
                rate = window["requests"] / window["seconds"]
                share = rate / ceiling_rate if ceiling_rate else 0.0
                goals.append(
                    f"saturation: {rate:.1f} requests/s of the study ({window['requests']} "
                    f"in {window['seconds']:.1f} s while all {phase.readers} readers "
                    f"answered) = {share:.2f} of the /health/ ceiling ({ceiling_rate:.1f} "
                    f"requests/s, the mean of {' and '.join(f'{r:.1f}' for r in rates)}); "
                    f"goal >= {SATURATION_GOAL:g}: {_goal(share >= SATURATION_GOAL)}"
                )
                study_cpu = window["stack_cpu_seconds"] / max(window["requests"], 1)
                print(
                    f"CPU of the stack's processes (gunicorn, Celery; not PostgreSQL) per "
                    f"request while all answered: {study_cpu * 1e3:.2f} ms, against "
                    f"{health_cpu * 1e3:.2f} ms per /health/ request "
                    f"({study_cpu / health_cpu if health_cpu else 0:.1f}x); locust "
                    f"{window['locust_cpu_seconds'] / max(window['requests'], 1) * 1e3:.2f} ms"
                )
            else:
                goals.append("saturation: no window with every reader answering")
        if phase.name == "peak":
            p95 = {
                kind: stats.get(kind, {}).get("p95", float("inf"))
                for kind in ("case page", "submit")
            }
            goals.append(
                f"peak: {phase.readers} readers x {phase.cases} cases, {phase.think:g} s per "
                f"case: p95 case page {p95['case page']:.0f} ms, submit {p95['submit']:.0f} "
                f"ms; goal < {PEAK_P95_GOAL:g} ms: "
                f"{_goal(max(p95.values()) < PEAK_P95_GOAL)}"
            )
    users = args.readers or args.peak_readers
    print(f"\nceiling: /health/, {users} users, {args.ceiling_seconds} s, before and after")
    print(f"{header}{'req/s':>10}")
    for run in ceilings:
        print(stats_line("health", run.result["stats"].get("health")))
    clean = errors == 0 and totals["lost"] == 0
    goals.append(f"errors {errors}, lost answers {totals['lost']}; goal 0 and 0: {_goal(clean)}")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    for problem in problems:
        print(f"FAILED: {problem}")
    seconds = sum(_seconds(runs[phase.name]) for phase in phases)
    print(
        f"answers {totals['stored']}/{totals['expected']} errors {errors} "
        f"lost {totals['lost']} seconds {seconds:.1f}"
    )
    return 1 if problems or errors else 0


if __name__ == "__main__":
    sys.exit(main())
