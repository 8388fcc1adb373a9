"""Machine-to-machine endpoints for the network partner."""
from django.urls import path

app_name = "partner_api"
urlpatterns: list = []
