"""The operator roles as Django groups, kept in step with the code after every migrate:
support reads everything and may retry, resume and cancel a renewal and resend emails; finance
may also refund, suspend, correct usage, import and assign lines, edit packages and the retry
policy, and answer data-rights requests (export a customer's data, close an account). Superusers do all."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

SUPPORT = "support"
FINANCE = "finance"
# Both roles read these apps' lists (provisioning: eSIM orders and the profile pool, docs/provisioning.md).
OPERATOR_APPS = ("accounts", "payments", "renewals", "provisioning")

SUPPORT_ACTIONS = [
    "accounts.retry_renewal",
    "accounts.cancel_renewal",
    "accounts.resume_line",
    "accounts.email_customer",
    "accounts.view_operations",
]
FINANCE_ACTIONS = SUPPORT_ACTIONS + [
    "accounts.refund_charge",
    "accounts.suspend_line",
    "accounts.import_lines",
    "accounts.assign_line",
    "accounts.adjust_usage",
    "accounts.add_package",
    "accounts.change_package",
    "renewals.change_retrypolicy",
    "accounts.change_usageretention",
    # Data rights (docs/data-rights.md): a subject access request's export and an account closure.
    "accounts.export_customer_data",
    "accounts.close_account",
]


def _permissions(Permission, codenames: list[str]):
    wanted = {tuple(name.split(".")) for name in codenames}
    rows = Permission.objects.filter(content_type__app_label__in=OPERATOR_APPS).select_related("content_type")
    return [p for p in rows if (p.content_type.app_label, p.codename) in wanted]


def ensure_operator_groups(using: str = "default", apps=global_apps) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    # post_migrate runs app by app: make sure the other apps' permissions exist before using them.
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    views = list(
        Permission.objects.using(using).filter(content_type__app_label__in=OPERATOR_APPS, codename__startswith="view_")
    )
    for name, actions in ((SUPPORT, SUPPORT_ACTIONS), (FINANCE, FINANCE_ACTIONS)):
        group, _created = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(views + _permissions(Permission, actions))


def on_post_migrate(sender, using="default", **kwargs) -> None:
    ensure_operator_groups(using=using)
