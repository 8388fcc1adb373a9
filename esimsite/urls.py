from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from console.health import healthz
from payments import urls as payment_urls
from payments.webhooks import CappedWebhookView
from renewals import views as renewal_views

# Payments' pages, with the pay-now page that belongs to renewals (which payments cannot import)
# under its old address and name, payments:pay_renewal.
payment_pages = (
    [*payment_urls.urlpatterns, path("renewals/<int:renewal_id>/pay/", renewal_views.pay_renewal, name="pay_renewal")],
    payment_urls.app_name,
)
# dj-stripe's webhook route (same name), served by our view that caps the body before storing it.
stripe_urls = ([path("webhook/<uuid:uuid>/", CappedWebhookView.as_view(), name="djstripe_webhook_by_uuid")], "djstripe")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Before allauth's own: its sign-up phone step, without the tell of an already-registered number.
    path("accounts/phone/verify/", account_views.verify_phone, name="account_verify_phone"),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("stripe/", include(stripe_urls, namespace="djstripe")),
    path("api/partner/", include("partner.urls")),
    path("payments/", include(payment_pages)),
    path("renewals/", include("renewals.urls")),
    path("esim/", include("provisioning.urls")),
    path("", include("accounts.urls")),
]
