"""The project's URLs plus stand-in routes named like the payments and renewals views, to show
that the portal's guarded links appear once those views exist (whatever the merge order)."""
from django.http import HttpResponse
from django.urls import include, path

from esimsite.urls import urlpatterns as project_urlpatterns


def placeholder(request, **kwargs):
    return HttpResponse("placeholder")


payments_routes = ([
    path("methods/", placeholder, name="methods"),
    path("history/", placeholder, name="history"),
    path("lines/<int:line_id>/buy/", placeholder, name="buy"),
], "payments")
renewals_routes = ([path("lines/<int:line_id>/", placeholder, name="rule")], "renewals")

urlpatterns = [
    path("test-payments/", include(payments_routes)),
    path("test-renewals/", include(renewals_routes)),
    *project_urlpatterns,
]
