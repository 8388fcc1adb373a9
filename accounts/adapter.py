"""django-allauth hooks for our User model (email and/or phone, no username)."""
from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    pass
