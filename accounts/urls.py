from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("", views.home, name="home"),
    path("lines/<int:line_id>/", views.line_detail, name="line_detail"),
    path("plans/", views.plans, name="plans"),
    path("settings/", views.profile, name="settings"),
    path("language/", views.set_language, name="set_language"),
    path("manifest.webmanifest", views.web_manifest, name="web_manifest"),
]
