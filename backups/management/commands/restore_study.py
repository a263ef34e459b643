from django.core.management.base import BaseCommand, CommandError

from audit.services import cli_actor_name
from backups.services import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a study backup (made by backup_study) into this instance. Every checksum "
        "and conflict is checked first; then everything is written in one transaction."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, path, **options):
        try:
            result = backup_restore(source=path, actor_name=cli_actor_name())
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {result.study.slug!r}: {result.rows} rows, {result.files} files."
            )
        )
