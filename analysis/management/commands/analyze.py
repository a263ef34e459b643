"""``manage.py analyze``: every table, figure and the HTML report of a study, from the
database (``--study SLUG``) or from exported CSV files (``--answers`` / ``--predictions``,
either may be left out)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analysis.stats import InputError


class Command(BaseCommand):
    help = (
        "Analyse a reader study (per-class metrics, kappa, CNN vs readers, ROC/AUC, "
        "agreement; with several reading conditions, each condition and the conditions "
        "compared) and write CSV/Excel tables, figures and report.html into --out."
    )

    def add_arguments(self, parser):
        source = parser.add_argument_group("data (either --study or the files)")
        source.add_argument("--study", help="slug of a study in the database")
        source.add_argument("--answers", help="answers CSV: reader, case, truth, answer, ...")
        source.add_argument(
            "--predictions", help="predictions CSV: model, case, truth, answer[, prob_<CODE>...]"
        )
        parser.add_argument("--out", required=True, help="output folder (created if missing)")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap / t-SNE seed")
        parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
        parser.add_argument(
            "--choices",
            help="comma-separated diagnosis codes (default: the study's choices, "
            "or the sorted truths of the files)",
        )
        parser.add_argument("--adjust", choices=["holm", "bonferroni"], default="holm")
        parser.add_argument(
            "--readers",
            choices=["finished", "all"],
            default="finished",
            help="which readers count: finished (default: only the readers who had finished "
            "the study, as in the reference study; from a file without a finished column, "
            "those who answered every case) or all (every reader, on the cases they "
            "answered); the report says how many were left out",
        )
        parser.add_argument(
            "--subgroup",
            help="reader attribute column: every reader-dependent table is also computed "
            "per value; COLUMN:E0,E1,... cuts a numeric column into bands [E0,E1), ..., "
            "[En,inf) (e.g. years:0,5,10)",
        )
        parser.add_argument(
            "--power-effect",
            type=float,
            help="with several reading conditions: the difference of top-1 accuracy a next "
            "study should detect, for the power table's sample size (default 0.05)",
        )
        parser.add_argument("--title", help="report title")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, **options):
        from analysis import loaders, services

        study_slug = options["study"]
        answers_csv, predictions_csv = options["answers"], options["predictions"]
        if study_slug and (answers_csv or predictions_csv):
            raise CommandError("give either --study or --answers/--predictions, not both")
        if not study_slug and not (answers_csv or predictions_csv):
            raise CommandError("give --study SLUG, or --answers and/or --predictions CSV files")
        if options["bootstrap"] < 1:
            raise CommandError(f"--bootstrap must be at least 1, got {options['bootstrap']}")
        effect = options["power_effect"]
        if effect is not None and not 0 < abs(effect) < 1:
            raise CommandError(f"--power-effect must lie between 0 and 1, got {effect}")
        for path in (answers_csv, predictions_csv):
            if path and not Path(path).is_file():
                raise CommandError(f"no such file: {path}")
        choices = (
            [c.strip() for c in options["choices"].split(",") if c.strip()]
            if options["choices"]
            else None
        )
        progress = not options["no_progress"] and options["verbosity"] >= 1 and sys.stderr.isatty()
        started = time.perf_counter()
        try:
            if study_slug:
                from cases.models import Study

                study = Study.objects.filter(slug=study_slug).first()
                if study is None:
                    raise CommandError(f"no study with slug {study_slug!r}")
                data = loaders.study_data(study, choices=choices, title=options["title"])
            else:
                data = loaders.file_data(
                    answers_csv, predictions_csv, choices=choices, title=options["title"]
                )
            files = services.report_write(
                data=data,
                out_dir=Path(options["out"]),
                seed=options["seed"],
                n_bootstrap=options["bootstrap"],
                adjust=options["adjust"],
                subgroup=options["subgroup"],
                readers=options["readers"],
                progress=progress,
                power_effect=effect,
            )
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        for path in files.paths():
            self.stdout.write(str(path))
        # Problems that did not stop the analysis (e.g. probabilities not summing to 1);
        # they are also in summary.json "warnings".
        for warning in json.loads(files.summary.read_text()).get("warnings") or []:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(files.paths())} files written to {files.out_dir} in "
                f"{time.perf_counter() - started:.1f} s; open {files.html}"
            )
        )
