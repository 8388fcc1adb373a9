from django.urls import path

from . import views

app_name = "renewals"
urlpatterns = [
    path("lines/<int:line_id>/", views.rule_page, name="rule"),
    path("lines/<int:line_id>/off/", views.turn_off, name="turn_off"),
    path("<int:renewal_id>/paid/", views.paid, name="paid"),
]
