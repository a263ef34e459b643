"""Seed the synthetic demo study and serve the platform (web server + Celery worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from demo.services import DEFAULT_SEED, demo_build, demo_reset


class Command(BaseCommand):
    help = (
        "Build the synthetic demo study (200 generated cases, 8 classes, simulated readers) "
        "and serve the platform at http://127.0.0.1:8000 with a Celery worker. Safe to run "
        "again: an existing demo study is kept."
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
            "--reset", action="store_true", help="delete the demo study first and rebuild it"
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-models",
            action="store_true",
            help="do not register the demo CNN or queue its inference run",
        )

    def handle(self, *args, seed, readers, no_serve, reset, port, no_models, **options):
        if seed is not None and seed < 0:
            raise CommandError(f"--seed {seed}: use a whole number from 0 up")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if reset and demo_reset():
            self.stdout.write("Deleted the previous demo study.")
        result = demo_build(seed=seed, n_readers=readers, data_dir=settings.DATA_DIR, progress=True)
        study = result.study
        # The CNN side needs the inference app; without it the demo has readers only.
        if apps.is_installed("inference") and not no_models:
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
        self.stdout.write(
            "\n  SYNTHETIC DATA: generated images and simulated readers, no patient data.\n\n"
            f"  Platform:    http://127.0.0.1:{port}/\n"
            f"  Admin:       http://127.0.0.1:{port}/admin/  user {result.admin_username!r}"
            f"  password {result.admin_password!r}\n"
            f"  Demo reader: user {result.reader_username!r}  password "
            f"{result.reader_password!r}\n"
            f"  (kept in {settings.DATA_DIR / 'demo-credentials.json'})\n"
        )
        if no_serve:
            return
        self._serve(port)

    def _serve(self, port: int) -> None:
        """Run the web server and a worker as children; Ctrl-C stops both."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = [
            [
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
                "--beat",  # embedded beat: sends what waited for the broker
            ],
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        ]

        def stop(signum, frame):
            raise KeyboardInterrupt

        # `kill` (SIGTERM) stops the children too, not only Ctrl-C.
        signal.signal(signal.SIGTERM, stop)
        # Their own process group: a terminal's Ctrl-C reaches only this command, which
        # passes one SIGINT on (a second one made the worker shut down cold, mid-exit).
        children = [
            subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR, process_group=0)
            for cmd in commands
        ]
        self.stdout.write("Serving; press Ctrl-C to stop the web server and the worker.")
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        for child in children:
            if child.returncode not in (0, 1, -signal.SIGINT, -signal.SIGTERM):
                self.stderr.write(f"{' '.join(child.args[:4])} exited with {child.returncode}")
