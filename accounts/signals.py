"""Reactions to allauth's account events."""

from allauth.account.signals import user_logged_in
from django.dispatch import receiver
from django.utils import translation


@receiver(user_logged_in)
def apply_saved_language(sender, request, user, **kwargs):
    # The page after the login redirect is rendered by UserLanguageMiddleware in the user's
    # language; this makes the rest of the login request (allauth's "signed in" message) agree.
    if user.language and translation.check_for_language(user.language):
        translation.activate(user.language)
        request.LANGUAGE_CODE = user.language
