from django.core.management.base import BaseCommand, CommandError

from audit.services import cli_actor_name
from backups.services import backup_write
from cases.models import Study


class Command(BaseCommand):
    help = (
        "Write a full backup of one study (cases, images, pseudonymous readers and "
        "profiles, answers with their history, predictions, audit events) to a .zip with "
        "a checksum for every file."
    )

    def add_arguments(self, parser):
        parser.add_argument("study_slug")
        parser.add_argument("path", help="the .zip to write")

    def handle(self, *args, study_slug, path, **options):
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise CommandError(f"no study with slug {study_slug!r}")
        if not path.endswith(".zip"):
            raise CommandError("the backup path must end in .zip")
        manifest = backup_write(study=study, destination=path, actor_name=cli_actor_name())
        rows = sum(manifest["counts"].values())
        files = len(manifest["sha256"]) - 1
        self.stdout.write(
            self.style.SUCCESS(f"Backed up {study_slug!r}: {rows} rows, {files} files -> {path}")
        )
