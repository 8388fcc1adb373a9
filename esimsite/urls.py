from django.contrib import admin
from django.urls import include, path

from accounts.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("api/partner/", include("accounts.api_urls")),
    path("payments/", include("payments.urls")),
    path("renewals/", include("renewals.urls")),
    path("", include("accounts.urls")),
]
