"""A study's analysis report as computed in the background, with its files in the
default storage (the media folder or a bucket)."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import models
from django.db.models import Q

from cases.models import Study
from readerstudy.storage import local_path


def new_report_folder() -> str:
    """A random folder of the default storage: its name says nothing about the study."""
    return f"reports/{secrets.token_hex(12)}"


class AnalysisReport(models.Model):
    """One computation of a study's report for a fingerprint of its data and parameters.

    ``fingerprint`` hashes what the numbers depend on (see
    :func:`analysis.services.report_fingerprint`); a request for the same fingerprint
    reuses a done report instead of computing it again. ``files`` lists the names written
    into ``folder``: the download view serves those names and nothing else.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="analysis_reports")
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the inputs below.")
    inputs = models.JSONField(default=dict, blank=True, help_text="What the fingerprint hashes.")
    seed = models.BigIntegerField(default=0)
    n_bootstrap = models.PositiveIntegerField(default=2000)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    folder = models.CharField(max_length=64, unique=True, default=new_report_folder, editable=False)
    files = models.JSONField(default=list, blank=True, help_text="File names in the folder.")
    progress = models.JSONField(
        default=dict,
        blank=True,
        help_text="While it is computed: the last step done, and how many of how many.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the broker took the task; empty while it waits."
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["study", "fingerprint"], name="report_study_fingerprint")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]),
                name="report_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(n_bootstrap__gte=1), name="report_bootstrap_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"report {self.pk} of {self.study.slug} ({self.status})"

    @property
    def path(self) -> Path:
        """The report's folder on this machine, where the storage is the media folder;
        object storage has no paths (``NotImplementedError``): use :meth:`file_open`."""
        path = local_path(self.folder)
        if path is None:
            raise NotImplementedError("the report's files are in object storage")
        return path

    def file_open(self, name: str) -> File | None:
        """A file this report wrote, open for reading from the storage; None for any
        other name, or when the file is gone."""
        from analysis.report.files import is_report_file_name

        if self.status != self.Status.DONE or name not in self.files:
            return None
        if not is_report_file_name(name):
            return None
        try:
            return default_storage.open(f"{self.folder}/{name}", "rb")
        except FileNotFoundError:
            return None
