"""Seed the synthetic demo studies and serve the platform (web server + Celery worker).

Start-up: the static files are collected in a child process while the studies are built,
and only when their sources changed since the last start (a fingerprint in
``STATIC_ROOT``); a kept study is not rebuilt; the demo CNN's run on the demo study is
queued only when it has no run in progress and predictions are missing, and it fills in
while the platform serves (the worker resumes a run that a stop cut off).

The AI-assisted study (sequential: unaided, then with the CNN's support) cannot open
before the CNN has predicted each of its cases, and its simulated readers' aided answers
depend on what the CNN said: its first build runs the CNN here, before serving (some 25 s
for the 200 cases with Grad-CAM on a 2-core CPU), then opens it and draws those answers.
A start interrupted meanwhile leaves it a draft with the predictions made so far; the next
start goes on from there.

Stop: the first Ctrl-C (or SIGTERM) asks the web server and the worker to stop and, after
:data:`STOP_GRACE` seconds, kills whatever of their process groups is left (the worker's
current task included: it is redone at the next start; the embedded beat too); a second
Ctrl-C kills them at once. SIGINT works even when the shell that started the demo ignores
it (a background job).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cases.services import StudyError
from demo.services import (
    AIDED_SLUG,
    DEFAULT_SEED,
    DEMO_SLUG,
    demo_aided_open,
    demo_build,
    demo_reset,
)

# Seconds the web server and the worker get to stop by themselves after a Ctrl-C.
STOP_GRACE = 5
STATIC_STAMP = ".sources-sha256"


def static_sources_digest() -> str:
    """A fingerprint of every static source file (path, size, modification time), as the
    staticfiles finders list them: what collectstatic would collect."""
    digest = hashlib.sha256()
    for finder in get_finders():
        for path, storage in sorted(finder.list([]), key=lambda item: item[0]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def static_collect_start() -> tuple[subprocess.Popen | None, str]:
    """Start ``collectstatic`` in a child process when the sources changed since the last
    collection (or none was made); returns the process (None when up to date) and the
    sources' digest, to be recorded once it succeeded."""
    digest = static_sources_digest()
    root = Path(settings.STATIC_ROOT)
    stamp = root / STATIC_STAMP
    if stamp.is_file() and stamp.read_text() == digest and (root / "staticfiles.json").is_file():
        return None, digest
    stamp.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=settings.BASE_DIR,
        process_group=0,
    )
    return child, digest


def static_collect_finish(child: subprocess.Popen | None, digest: str) -> None:
    if child is None:
        return
    if child.wait() != 0:
        raise CommandError(f"collectstatic failed (exit status {child.returncode})")
    (Path(settings.STATIC_ROOT) / STATIC_STAMP).write_text(digest)


class Command(BaseCommand):
    help = (
        "Build the synthetic demo study (200 generated cases, 8 classes, simulated readers) "
        "and its AI-assisted twin (the same cases, read unaided then with the demo CNN's "
        "support), and serve the platform at http://127.0.0.1:8000 with a Celery worker. "
        "Safe to run again: existing demo studies are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help=f"same seed, same study (default {DEFAULT_SEED}); an existing demo study "
            "is kept whatever its seed: add --reset to rebuild it",
        )
        parser.add_argument("--readers", type=int, default=30, help="simulated readers")
        parser.add_argument("--no-serve", action="store_true", help="seed and exit")
        parser.add_argument(
            "--reset", action="store_true", help="delete the demo studies first and rebuild them"
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-models",
            action="store_true",
            help="do not register the demo CNN or queue its inference run (nor build the "
            "AI-assisted study, which needs it)",
        )
        parser.add_argument(
            "--no-aided",
            action="store_true",
            help="do not build the AI-assisted study (which runs the demo CNN before serving)",
        )

    def handle(self, *args, **options):
        try:
            self._start(**options)
        except KeyboardInterrupt:
            # Ctrl-C while a study is being built: each study is written in one
            # transaction, so an interrupted build leaves none behind (the AI-assisted
            # study's CNN run, after its import, goes on at the next start).
            _kill_groups(self._helpers)
            raise CommandError("interrupted; run it again to go on", returncode=130) from None

    _helpers: list[subprocess.Popen] = []

    def _start(self, *, seed, readers, no_serve, reset, port, no_models, no_aided, **options):
        if seed is not None and seed < 0:
            raise CommandError(f"--seed {seed}: use a whole number from 0 up")
        # A shell that started the demo in the background made it ignore SIGINT (and its
        # children would inherit that): take Ctrl-C back.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        collecting = static_collect_start()
        self._helpers = [collecting[0]] if collecting[0] is not None else []
        call_command("migrate", interactive=False, verbosity=0)
        if reset:
            for slug in (DEMO_SLUG, AIDED_SLUG):
                if demo_reset(slug=slug):
                    self.stdout.write(f"Deleted the previous demo study {slug!r}.")
        # The CNN side needs the inference app; without it the demo has readers only.
        models = apps.is_installed("inference") and not no_models
        result = demo_build(
            seed=seed,
            n_readers=readers,
            data_dir=settings.DATA_DIR,
            progress=True,
            aided=models and not no_aided,
        )
        study = result.study
        if models:
            call_command("demo_models", study=study.slug, stdout=self.stdout)
        state = "Built" if result.created else "Kept the existing"
        built_from = "an unrecorded seed" if result.seed is None else f"seed {result.seed}"
        self.stdout.write(
            self.style.SUCCESS(
                f"{state} demo study {study.slug!r}: {study.cases.count()} synthetic cases, "
                f"{result.simulated_readers} simulated readers, built from {built_from}."
            )
        )
        if not result.created and seed is not None and seed != result.seed:
            self.stdout.write(
                self.style.WARNING(
                    f"WARNING: --seed {seed} was not used: the existing demo study, built "
                    f"from {built_from}, is kept as it is. To rebuild it from seed {seed}: "
                    f"manage.py demo --reset --seed {seed} (or `make clean-demo`, which "
                    "deletes var/ with the whole demo database)."
                )
            )
        if result.aided_study is not None:
            self._aided(result, readers)
        self.stdout.write(
            "\n  SYNTHETIC DATA: generated images and simulated readers, no patient data.\n\n"
            f"  Platform:    http://127.0.0.1:{port}/\n"
            f"  Admin:       http://127.0.0.1:{port}/admin/  user {result.admin_username!r}"
            f"  password {result.admin_password!r}\n"
            f"  Demo reader: user {result.reader_username!r}  password "
            f"{result.reader_password!r}\n"
            f"  (kept in {settings.DATA_DIR / 'demo-credentials.json'})\n"
        )
        static_collect_finish(*collecting)
        if no_serve:
            return
        if apps.is_installed("inference"):
            from inference.services.runs import inference_runs_resend

            # The demo's worker is about to start and is the only one: what it took
            # before a stop and did not start is sent again (see inference_runs_resend).
            inference_runs_resend(study=study)
        self._serve(port)

    def _aided(self, result, readers: int) -> None:
        """Open the AI-assisted study (its first build: the CNN's run here, its readers);
        one that cannot open stays a draft, said so, and the platform serves anyway."""
        kept = result.aided_study.status != result.aided_study.Status.DRAFT
        try:
            aided = demo_aided_open(study=result.aided_study, n_readers=readers, progress=True)
        except StudyError as exc:
            self.stdout.write(
                self.style.WARNING(
                    f"WARNING: the AI-assisted demo study {AIDED_SLUG!r} stays a draft: {exc}. "
                    "The next start tries again."
                )
            )
            return
        readers_in = aided.enrolments.filter(reader__reader_profile__is_simulated=True).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"{'Kept the existing' if kept else 'Built'} AI-assisted demo study "
                f"{aided.slug!r}: the same {aided.cases.count()} synthetic cases, read unaided "
                f"and then with the support of the UNTRAINED demo CNN, {readers_in} simulated "
                "readers."
            )
        )

    def _serve(self, port: int) -> None:
        """Run the web server and a worker as children; Ctrl-C stops both."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = [
            worker_command(),
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        ]

        interrupts = []

        def interrupted(signum, frame):
            interrupts.append(signum)
            if len(interrupts) > 1:
                _kill_groups(children)  # a second Ctrl-C: at once

        # Their own process groups: a terminal's Ctrl-C reaches only this command, which
        # asks each to stop once (a second SIGINT made the worker shut down cold, mid-exit).
        children: list[subprocess.Popen] = []
        signal.signal(signal.SIGINT, interrupted)
        signal.signal(signal.SIGTERM, interrupted)
        children += [
            subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR, process_group=0)
            for cmd in commands
        ]
        self.stdout.write("Serving; press Ctrl-C to stop the web server and the worker.")
        while not interrupts and all(child.poll() is None for child in children):
            time.sleep(0.2)
        if interrupts:
            self.stdout.write("Stopping the web server and the worker...")
        for child in children:
            if child.poll() is None:
                # The worker's warm shutdown; runserver stops at once.
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(c.poll() is None for c in children) and time.monotonic() < deadline:
            if len(interrupts) > 1:
                break
            time.sleep(0.1)
        # Whatever is left (a task that runs on; the worker's embedded beat, which
        # outlives the worker) goes with its group.
        _kill_groups(children)
        for child in children:
            child.wait()
        expected = (0, 1, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL)
        for child in children:
            if child.returncode not in expected:
                self.stderr.write(f"{' '.join(child.args[:4])} exited with {child.returncode}")
        self.stdout.write("Stopped.")


def worker_command() -> list[str]:
    """The demo's Celery worker: the only one, so it consumes every queue (inference and
    the light tasks), with the beat embedded (it sends what waited for the broker)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "readerstudy",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "--hostname",
        "demo@%h",
        "--queues",
        ",".join(settings.READERSTUDY_QUEUES),
        "--beat",
    ]


def _kill_groups(children: list[subprocess.Popen]) -> None:
    """SIGKILL every process of each child's process group (the child's pid)."""
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
