from django.core.management.base import BaseCommand, CommandError

from audit.services import cli_actor_name
from cases.importing import ImportRejected, cases_import


class Command(BaseCommand):
    help = (
        "Import cases into a study from a folder or .zip holding cases.csv (columns "
        "case_id, diagnosis, clinical_image, dermoscopic_image; optional age, sex, site, "
        "histopathology) and the image files. Everything is checked before anything is "
        "written. A study that does not exist yet is created as a draft when --title and "
        "--choices are given (or the bundle has a study.json)."
    )

    def add_arguments(self, parser):
        parser.add_argument("study_slug")
        parser.add_argument("path", help="a folder or a .zip archive")
        parser.add_argument("--title", help="title of a new study")
        parser.add_argument("--choices", help="diagnosis codes of a new study, e.g. MN,SK,BCC")
        parser.add_argument("--description", help="description of a new study")

    def handle(self, *args, study_slug, path, title, choices, description, **options):
        codes = [c.strip() for c in choices.split(",")] if choices else None
        try:
            result = cases_import(
                slug=study_slug,
                source=path,
                title=title,
                choices=codes,
                description=description,
                actor_name=cli_actor_name(),
            )
        except ImportRejected as exc:
            raise CommandError(exc.report()) from None
        verb = "Created study" if result.study_created else "Added to study"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {result.study.slug!r}: {result.cases_created} case(s) imported "
                f"({result.study.cases.count()} in the study)."
            )
        )
