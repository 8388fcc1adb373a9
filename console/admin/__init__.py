"""The ModelAdmins of every app, one module per app whose models they show. Django's admin
autodiscovery imports `console.admin`; the models stay in their apps (app labels, migrations)."""

from . import accounts, history, packages, payments, provisioning, records, renewals  # noqa: F401  (each registers its ModelAdmins)
