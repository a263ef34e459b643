"""Logins, logouts and failed logins go into the audit trail; deactivating a user ends
their live sessions."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import pre_save
from django.dispatch import receiver

from audit.models import AuditEvent
from audit.services import audit_log


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit_log(action=AuditEvent.Action.LOGIN, actor=user)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_log(action=AuditEvent.Action.LOGOUT, actor=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # The password is never logged: only the user name that was tried.
    name = str(credentials.get("username", ""))[:150]
    audit_log(
        action=AuditEvent.Action.LOGIN_FAILED,
        actor_name=name or "(empty)",
        after={"username": name},
    )


@receiver(pre_save, sender=get_user_model())
def _deactivation_ends_sessions(sender, instance, **kwargs):
    if instance.pk is None or instance.is_active:
        return
    was_active = sender.objects.filter(pk=instance.pk, is_active=True).exists()
    if not was_active:
        return
    from audit.sessions import end_sessions_of

    ended = end_sessions_of(instance)
    audit_log(
        action=AuditEvent.Action.USER_DEACTIVATED,
        actor_name="system",
        obj=instance,
        after={"sessions_ended": ended},
    )
