"""The admin home page's "Your studies": each study the user administers, linked to its
dashboard (templates/admin/index.html)."""

from __future__ import annotations

from django import template

from cases.selectors import studies_index

register = template.Library()


@register.simple_tag
def your_studies(user) -> list:
    return list(studies_index(user=user)[:50])
