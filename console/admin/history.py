"""The change history every console page shows (accounts.ChangeRecord): the inline on an object's
page, the mixin that attributes admin saves to the operator, and the read-only list."""

from django.contrib import admin
from django.contrib.contenttypes.admin import GenericTabularInline
from django.utils.translation import gettext_lazy as _

from accounts.history import acting
from accounts.models import ChangeRecord
from console.admin.display import ReadableFieldsMixin


class ChangeHistoryInline(ReadableFieldsMixin, GenericTabularInline):
    """The object's change history on its own page: who, when, what, before and after."""

    model = ChangeRecord
    ct_field = "content_type"
    ct_fk_field = "object_id"
    fields = ["created_at", "actor", "action", "reason", "before", "after"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-created_at", "-id"]
    verbose_name_plural = _("change history")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HistoryAdminMixin:
    """Saves and deletions from the admin are attributed to the operator in the history."""

    def save_model(self, request, obj, form, change):
        with acting(request.user):
            super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        with acting(request.user):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with acting(request.user):
            for obj in queryset:  # one by one, so each deletion writes its history row
                obj.delete()


@admin.register(ChangeRecord)
class ChangeRecordAdmin(ReadableFieldsMixin, admin.ModelAdmin):
    """All history in one list, for questions like "what did this operator do today"."""

    list_display = ["created_at", "content_type", "object_repr", "action", "actor", "reason"]
    list_filter = ["action", "content_type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["object_repr", "object_id", "actor__email", "reason"]
    list_select_related = ["content_type", "actor"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at",
        "content_type",
        "object_id",
        "object_repr",
        "action",
        "actor",
        "reason",
        "before",
        "after",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
