"""Writing audit events. Call ``audit_log`` inside the transaction of the change it
records, so the event and the change are committed (or rolled back) together."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder

from audit.middleware import current_origin
from audit.models import AuditEvent


def _json_safe(value: Any) -> Any:
    import json

    return None if value is None else json.loads(json.dumps(value, cls=DjangoJSONEncoder))


_USER_AGENT_LENGTH = AuditEvent._meta.get_field("user_agent").max_length


def audit_log(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_name: str | None = None,
    study: str = "",
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    before: Any = None,
    after: Any = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent:
    """Append one event. ``obj`` (a model instance) fills ``object_type``/``object_id``;
    ``ip`` and ``user_agent`` default to those of the request being handled
    (:mod:`audit.middleware`), none outside a request; the user agent is cut to the
    length the trail stores."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    user = actor if actor is not None and actor.is_authenticated else None
    if actor_name is None:
        actor_name = user.get_username() if user is not None else "system"
    origin = current_origin()
    if origin is not None:
        ip = origin.ip if ip is None else ip
        user_agent = origin.user_agent if user_agent is None else user_agent
    return AuditEvent.objects.create(
        action=action,
        actor=user,
        actor_name=actor_name[:150],
        study=study or "",
        object_type=object_type,
        object_id=str(object_id),
        before=_json_safe(before),
        after=_json_safe(after),
        ip=ip,
        user_agent=(user_agent or "")[:_USER_AGENT_LENGTH],
    )


def cli_actor_name() -> str:
    """Who ran a management command: the operating-system account, as ``cli:NAME``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def audited_csv_download(*, request, study, frame, export: str, bom: bool = False):
    """An attachment ``<study>-<export>`` holding ``frame`` as CSV, private and never
    cached, with the download recorded in the audit trail. ``bom``: start with a UTF-8
    byte-order mark, so that Excel shows non-ASCII (Chinese) text correctly."""
    from django.http import HttpResponse

    audit_log(
        action=AuditEvent.Action.EXPORT_DOWNLOAD,
        actor=request.user,
        study=study.slug,
        obj=study,
        after={"export": export, "rows": len(frame)},
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{export}"'
    response["Cache-Control"] = "private, no-store"
    if bom:
        response.write("\ufeff")
    frame.to_csv(response, index=False)
    return response
