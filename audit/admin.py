import csv

from django.contrib import admin
from django.http import HttpResponse

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_name", "action", "study", "object_type", "object_id", "ip"]
    list_filter = ["action", "study"]
    search_fields = ["actor_name", "object_id", "study"]
    date_hierarchy = "at"
    actions = ["export_csv"]

    def get_queryset(self, request):
        # A study admin sees the events of their own studies; superusers see everything.
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        from cases.selectors import administered_studies

        slugs = administered_studies(user=request.user).values_list("slug", flat=True)
        return queryset.filter(study__in=list(slugs))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        # The default "delete selected" action would contradict the append-only rule.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Export the selected events as CSV")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit.csv"'
        response["Cache-Control"] = "private, no-store"
        writer = csv.writer(response)
        writer.writerow(
            [
                "at_utc",
                "actor",
                "action",
                "study",
                "object_type",
                "object_id",
                "before",
                "after",
                "ip",
            ]
        )
        for event in queryset.order_by("at", "id"):
            writer.writerow(
                [
                    event.at.isoformat(),
                    event.actor_name,
                    event.action,
                    event.study,
                    event.object_type,
                    event.object_id,
                    event.before,
                    event.after,
                    event.ip or "",
                ]
            )
        return response
