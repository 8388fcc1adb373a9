from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = _("Customers and lines")

    def ready(self):
        from . import history, signals  # noqa: F401

        history.connect()
        _narrow_allauth_settings_check()


# allauth's settings check assumes the email is the one thing it can verify. We verify whichever of
# email and phone a customer gave (accounts/stages.py, docs/sign-up.md), so these two findings are
# about a set-up we do not have; every other finding of that check still stands.
_VERIFIED_BY_OUR_STAGE = {
    "ACCOUNT_EMAIL_VERIFICATION = 'mandatory' requires 'email*' in ACCOUNT_SIGNUP_FIELDS",
    "ACCOUNT_LOGIN_METHODS conflicts with ACCOUNT_SIGNUP_FIELDS",
}


def _narrow_allauth_settings_check() -> None:
    from allauth.account import checks as allauth_checks
    from django.core import checks

    checks.registry.registry.registered_checks.discard(allauth_checks.settings_check)

    @checks.register()
    def allauth_settings_check(app_configs, **kwargs):
        return [m for m in allauth_checks.settings_check(app_configs, **kwargs) if m.msg not in _VERIFIED_BY_OUR_STAGE]
