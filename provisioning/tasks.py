"""Celery entry points of provisioning: they take ids and call a service. The order's state is in
its row (docs/provisioning.md): a task delivered twice or never is put right by the sweep."""

from celery import shared_task

from . import services


@shared_task(name="provisioning.advance_order", acks_late=True, ignore_result=True)
def advance_order(order_id: int) -> str:
    return services.advance_order(order_id=order_id).status


@shared_task(name="provisioning.sweep_orders", ignore_result=True)
def sweep_orders() -> int:
    return len(services.sweep_orders())


@shared_task(name="provisioning.send_install_reminders", ignore_result=True)
def send_install_reminders() -> int:
    return len(services.send_install_reminders())
