from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cases.models import Study
from cases.services import study_admin_add


class Command(BaseCommand):
    help = "Make a user an admin of one study (staff, scoped to that study only)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("study_slug")

    def handle(self, *args, username, study_slug, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"no user {username!r} (create it with createsuperuser-like "
                "tools or the admin first)"
            )
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise CommandError(f"no study with slug {study_slug!r}")
        study_admin_add(user=user, study=study)
        self.stdout.write(self.style.SUCCESS(f"{username} now administers {study_slug!r}."))
