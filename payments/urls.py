from django.urls import path

from . import views

# The pay-now page (renewals/<id>/pay/, "pay_renewal") is renewals' and joins this namespace in
# esimsite/urls.py: payments sits below renewals and does not import it.
app_name = "payments"
urlpatterns = [
    path("methods/", views.methods, name="methods"),
    path("methods/setup/", views.method_setup, name="method_setup"),
    path("methods/finish/", views.method_finish, name="method_finish"),
    path("methods/return/", views.method_return, name="method_return"),
    path("methods/<str:payment_method_id>/default/", views.method_default, name="method_default"),
    path("methods/<str:payment_method_id>/remove/", views.method_remove, name="method_remove"),
    path("lines/<int:line_id>/buy/", views.buy, name="buy"),
    path("charges/<int:charge_id>/authenticate/", views.authenticate, name="authenticate"),
    path("charges/<int:charge_id>/complete/", views.complete, name="complete"),
    path("charges/<int:charge_id>/receipt/", views.receipt, name="receipt"),
    path("history/", views.history, name="history"),
    path("history.csv", views.history_csv, name="history_csv"),
]
