from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.services import audit_log, cli_actor_name
from cases.importing import cases_export
from cases.models import Study


class Command(BaseCommand):
    help = (
        "Export a study's cases in the import format (cases.csv, study.json and the "
        "original images) to a new folder, or to a .zip when PATH ends in .zip."
    )

    def add_arguments(self, parser):
        parser.add_argument("study_slug")
        parser.add_argument("path")

    def handle(self, *args, study_slug, path, **options):
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise CommandError(f"no study with slug {study_slug!r}")
        try:
            count = cases_export(study=study, destination=path)
        except FileExistsError as exc:
            raise CommandError(str(exc)) from None
        audit_log(
            action=AuditEvent.Action.EXPORT_DOWNLOAD,
            actor_name=cli_actor_name(),
            study=study.slug,
            obj=study,
            after={"export": "cases", "path": str(path), "cases": count},
        )
        self.stdout.write(self.style.SUCCESS(f"Exported {count} case(s) to {path}."))
