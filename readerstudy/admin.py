"""The bases the project's ModelAdmins share (cases, inference, analysis): one rule for
which rows a staff user sees in a list or a form, and one for research data."""

from __future__ import annotations

from django.contrib import admin

from cases.models import Study
from cases.selectors import administered_studies


class StudyScopedAdmin(admin.ModelAdmin):
    """Lists and pages limited to the studies the user administers (all for a superuser).

    ``study_path`` is the lookup from the model to its Study; None for Study itself.
    """

    study_path: str | None = "study"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        studies = administered_studies(user=request.user)
        if self.study_path is None:
            return queryset.filter(pk__in=studies)
        return queryset.filter(**{f"{self.study_path}__in": studies}).distinct()

    def get_list_filter(self, request):
        # A plain filter on a study lists every study in the sidebar; list only those
        # that occur in the (scoped) rows instead.
        return [
            (entry, admin.RelatedOnlyFieldListFilter)
            if isinstance(entry, str) and entry.split("__")[-1] == "study"
            else entry
            for entry in super().get_list_filter(request)
        ]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Study and not request.user.is_superuser:
            kwargs["queryset"] = administered_studies(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ResearchDataAdmin:
    """For the admin (or inline) of research data (answers and their history, consents, audit
    events, every stored prediction): shown, never added, changed or deleted here, by anyone,
    superusers included. The change form is a view-only page without a save or delete
    button, and the list has no "Delete selected" action. Mixed in before the ModelAdmin
    base; the models and, on PostgreSQL, the database refuse the same."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        # Django leaves out an action the user lacks permission for; said once more here,
        # so that no later change of permissions brings the bulk deletion back.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
