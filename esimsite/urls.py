from django.contrib import admin
from django.urls import include, path

from accounts import urls as account_urls
from accounts import views as account_views
from console import health
from console import metrics as metrics_views
from console.two_factor import StaffActivateTOTPView
from payments import urls as payment_urls
from payments.webhooks import CappedWebhookView
from renewals import views as renewal_views

# Payments' pages, with the pay-now page that belongs to renewals (which payments cannot import)
# under its old address and name, payments:pay_renewal.
payment_pages = (
    [*payment_urls.urlpatterns, path("renewals/<int:renewal_id>/pay/", renewal_views.pay_renewal, name="pay_renewal")],
    payment_urls.app_name,
)
# Accounts' pages, with the data-rights pages of the settings (download my data, close my account),
# which read and close everything up to renewals and so live there (docs/data-rights.md).
account_pages = (
    [
        path("settings/data/", renewal_views.download_data, name="download_data"),
        path("settings/close/", renewal_views.close_account, name="close_account"),
        *account_urls.urlpatterns,
    ],
    account_urls.app_name,
)
# dj-stripe's webhook route (same name), served by our view that caps the body before storing it.
stripe_urls = ([path("webhook/<uuid:uuid>/", CappedWebhookView.as_view(), name="djstripe_webhook_by_uuid")], "djstripe")

urlpatterns = [
    # The probes: docs/deploying.md says which goes where.
    path("healthz", health.healthz, name="healthz"),
    path("healthz/live", health.live, name="healthz_live"),
    path("healthz/ready", health.ready, name="healthz_ready"),
    # Prometheus, behind METRICS_TOKEN (docs/operations-metrics.md).
    path("metrics", metrics_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Before allauth's own: its sign-up phone step, without the tell of an already-registered number.
    path("accounts/signup/", account_views.signup, name="account_signup"),
    path("accounts/phone/verify/", account_views.verify_phone, name="account_verify_phone"),
    # Before allauth's own: the same page, whose activation counts as staff's two-factor step.
    path("accounts/2fa/totp/activate/", StaffActivateTOTPView.as_view(), name="mfa_activate_totp"),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("stripe/", include(stripe_urls, namespace="djstripe")),
    path("api/partner/", include("partner.urls")),
    path("payments/", include(payment_pages)),
    path("renewals/", include("renewals.urls")),
    path("esim/", include("provisioning.urls")),
    path("", include(account_pages)),
]
