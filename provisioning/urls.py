from django.urls import path

from . import views

app_name = "provisioning"
urlpatterns = [
    path("buy/<int:package_id>/", views.buy, name="buy"),
    path("paid/<int:charge_id>/", views.charge_order, name="charge_order"),
    path("orders/<int:order_id>/", views.order_detail, name="order"),
    path("orders/<int:order_id>/status.json", views.order_status, name="order_status"),
    path(
        "es2plus/handleDownloadProgressInfo",
        views.handle_download_progress_info,
        name="handle_download_progress_info",
    ),
]
