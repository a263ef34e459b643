"""The one door to a study for its staff: every per-study page of the console asks
:func:`study_for_staff` for its study, and no page spells the check out again.

Someone else's study is a 404 (the page does not confirm it exists). A study admin who
lacks the permission a page needs is sent to the admin index, the answer the Django
admin gives for a page it does not offer; :func:`console.urls.console_page` turns
:class:`Refused` into that redirect, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from cases.models import Study
from cases.selectors import administered_studies


class Refused(Exception):
    """The user administers the study but may not read (or write) this part of it."""


@dataclass(frozen=True)
class Rights:
    """The Django permissions that let a study's admin read and write one part of the
    console: any one permission of a tuple grants it, an empty tuple asks for none.
    Writing needs the right to read as well."""

    read: tuple[str, ...]
    write: tuple[str, ...]


# The study's own pages: what the Study admin lets a user view and change.
STUDY_PAGES = Rights(read=("cases.view_study", "cases.change_study"), write=("cases.change_study",))
# The Report page shows AnalysisReport rows and, to write, requests a new one.
REPORT_PAGES = Rights(
    read=("analysis.view_analysisreport", "analysis.change_analysisreport"),
    write=("analysis.add_analysisreport",),
)
# "Run inference" starts an InferenceRun.
RUN_PAGES = Rights(
    read=("inference.view_inferencerun", "inference.add_inferencerun"),
    write=("inference.add_inferencerun",),
)
# Downloads outside the admin (the predictions CSV): administering the study suffices.
STUDY_FILES = Rights(read=(), write=())


def _grants(user, permissions: tuple[str, ...]) -> bool:
    return not permissions or any(user.has_perm(p) for p in permissions)


def may_use(user, rights: Rights, *, write: bool = False) -> bool:
    """Whether ``user`` may read (``write``: and write) the part of the console that
    ``rights`` guards; for a page that links to it."""
    return _grants(user, rights.read) and (not write or _grants(user, rights.write))


def _may_write(user, rights: Rights, *, write: bool) -> bool:
    """Whether ``user`` may write; raises :class:`Refused` when they may not read, or
    not write where ``write`` asks for it."""
    if not _grants(user, rights.read):
        raise Refused
    may_write = _grants(user, rights.write)
    if write and not may_write:
        raise Refused
    return may_write


def study_for_staff(
    request: HttpRequest,
    *,
    pk: int | None = None,
    slug: str | None = None,
    write: bool = False,
    rights: Rights = STUDY_PAGES,
) -> tuple[Study, bool]:
    """The study (by ``pk`` or ``slug``) if ``request.user`` administers it, and whether
    they may write to this part of it.

    Raises Http404 for a study they do not administer (every study for a superuser, the
    studies that list them as admins for other staff, none for anyone else), before any
    permission is looked at; :class:`Refused` when they lack ``rights.read``, or
    ``rights.write`` where ``write`` is True.
    """
    lookup = {"pk": pk} if slug is None else {"slug": slug}
    study = administered_studies(user=request.user).filter(**lookup).first()
    if study is None:
        raise Http404("No such study.")
    return study, _may_write(request.user, rights, write=write)


def studies_for_staff(
    request: HttpRequest, *, write: bool = False, rights: Rights = STUDY_PAGES
) -> QuerySet[Study]:
    """The studies a page may offer ``request.user`` to pick one from (the same rule as
    :func:`study_for_staff`, for a page whose study comes from a form). Raises
    :class:`Refused` when they lack the rights the page needs."""
    _may_write(request.user, rights, write=write)
    return administered_studies(user=request.user)
