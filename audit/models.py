"""The append-only audit trail: who did what, when (UTC), with before and after.

Rows are never updated or deleted: the model and its queryset refuse to, and on
PostgreSQL a trigger refuses any UPDATE or DELETE from any client (migration 0002).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AppendOnlyError(RuntimeError):
    """An attempt to change or delete an audit row."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are append-only: they cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit events are append-only: they cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("audit events are append-only: they cannot be updated")


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        ANSWER_SUBMIT = "answer.submit"
        ANSWER_CHANGE = "answer.change"
        ENROLMENT_CREATE = "enrolment.create"
        CONSENT_GIVE = "consent.give"
        PROFILE_SAVE = "profile.save"
        INVITATIONS_CREATE = "invitations.create"
        INVITATIONS_REVOKE = "invitations.revoke"
        STUDY_OPEN = "study.open"
        STUDY_CLOSE = "study.close"
        STUDY_CLOSING_DATE = "study.closing_date"
        CASES_IMPORT = "cases.import"
        EXPORT_DOWNLOAD = "export.download"
        MODEL_REGISTER = "model.register"
        INFERENCE_RUN = "inference.run"
        REPORT_REQUEST = "report.request"
        LOGIN = "auth.login"
        LOGIN_FAILED = "auth.login_failed"
        LOGOUT = "auth.logout"
        USER_DEACTIVATED = "auth.user_deactivated"
        STUDY_ADMIN_ADD = "study.admin_add"
        STUDY_ADMIN_REMOVE = "study.admin_remove"
        BACKUP_RESTORE = "backup.restore"
        PASSWORD_RESET = "auth.password_reset"
        LOCKOUT_RESET = "auth.unlock"
        ENROLMENT_FINISH = "enrolment.finish"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No database constraint and no cascade: deleting a user must not rewrite history,
    # so the row keeps the id and the name the user had.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    actor_name = models.CharField(
        max_length=150, blank=True, help_text="User name at the time, or 'system'."
    )
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    study = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Study slug, where the event belongs to a study.",
    )
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # Where the request that made the event came from (audit.middleware); empty for
    # events of tasks and commands.
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit events are append-only: they cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: they cannot be deleted")
