"""factory_boy factories for the cases app."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from cases.models import Case, CaseImage, Diagnosis, Enrolment, ReaderProfile, Study
from cases.services import case_order_for, study_create
from tests.conftest import image_bytes


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-test-123")


class ReaderProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReaderProfile

    user = factory.SubFactory(UserFactory)
    level = ReaderProfile.Level.ATTENDING
    years_in_dermatology = 8


def make_study(*, slug: str = "study", choices=("MN", "SK", "BCC"), **options) -> Study:
    return study_create(slug=slug, title=slug.title(), choices=list(choices), **options)


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Case
        skip_postgeneration_save = True

    study = factory.LazyFunction(lambda: make_study())
    source_id = factory.Sequence(lambda n: f"case-{n}")
    position = factory.Sequence(lambda n: n + 1)
    diagnosis = factory.LazyFunction(lambda: Diagnosis.objects.get(code="MN"))

    @factory.post_generation
    def with_images(case, create, extracted, **kwargs):
        if not create or extracted is False:
            return
        for offset, kind in enumerate(("clinical", "dermoscopic")):
            data = image_bytes(seed=case.pk * 2 + offset)
            image = CaseImage(
                case=case,
                kind=kind,
                format="JPEG",
                sha256="0" * 64,
                width=64,
                height=48,
                size_bytes=len(data),
            )
            for field in ("original", "web", "thumbnail"):
                getattr(image, field).save("x.jpg", ContentFile(data), save=False)
            image.save()


def enrol(*, study: Study, user, seed: int = 1) -> Enrolment:
    return Enrolment.objects.create(
        study=study, reader=user, order_seed=seed, case_order=case_order_for(study=study, seed=seed)
    )
