"""What a line's own changes mean for its renewals, whoever makes them (termination by
accounts.services.line_status.terminate_line, an owner change by whatever saves the line; accounts
may not import renewals, so these follow the model's saves): a terminated line's open renewals are cancelled, and a line
given to another owner has the old owner's rule turned off. Both run after the line's transaction
commits, so that they take their locks in the engine's order (rule, renewal, ..., line) and call the
processor outside any transaction."""

from django.db import transaction
from django.db.models.signals import post_init, post_save
from django.utils import timezone

from accounts.models import Line

from .services import precedence

SEEN_ATTR = "_renewals_seen"


def _remember(sender, instance, **kwargs) -> None:
    # From the loaded values only (a deferred field is not fetched): None means "not known".
    setattr(instance, SEEN_ATTR, (instance.__dict__.get("status"), instance.__dict__.get("owner_id")))


def _saved(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    status_before, owner_before = getattr(instance, SEEN_ATTR, (None, None))
    setattr(instance, SEEN_ATTR, (instance.status, instance.owner_id))
    if created:
        return
    line_id = instance.pk
    if instance.status == Line.Status.TERMINATED and status_before not in (None, Line.Status.TERMINATED):
        transaction.on_commit(
            lambda: precedence.cancel_renewals_of_terminated_lines(now=timezone.now(), line_ids=[line_id])
        )
    if owner_before is not None and instance.owner_id != owner_before:
        transaction.on_commit(lambda: precedence.line_owner_changed(line_id=line_id, now=timezone.now()))


def connect() -> None:
    post_init.connect(_remember, sender=Line, dispatch_uid="renewals-line-init")
    post_save.connect(_saved, sender=Line, dispatch_uid="renewals-line-saved")
