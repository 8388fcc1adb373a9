"""The operator console: the admin site with its two-factor gate, every app's ModelAdmin and
admin actions, the operations page, the operator roles and /healthz. It sits on top of every
other package and nothing imports it (docs/architecture.md)."""
