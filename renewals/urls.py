from django.urls import path

app_name = "renewals"
urlpatterns: list = []
