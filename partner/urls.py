"""Machine-to-machine endpoints for the network partner."""

from django.urls import path

from . import api

app_name = "partner_api"
urlpatterns = [
    path("usage", api.usage_batch, name="usage"),
    path("openapi.yaml", api.openapi_description, name="openapi"),
]
