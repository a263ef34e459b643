"""Celery tasks of the cases app: thin, the work is in services."""

from __future__ import annotations

from celery import shared_task

from cases.services import studies_close_due


@shared_task(name="cases.tasks.close_due_studies", ignore_result=True)
def close_due_studies() -> list[str]:
    """Close the open studies past their closing date (Celery beat, every minute)."""
    return studies_close_due()
