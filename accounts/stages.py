"""allauth login stages of ours. A customer signs up with an email, a phone, or both, and each
one given is verified before the first login (docs/sign-up.md): allauth's phone stage verifies the
phone; its email stage, with ACCOUNT_EMAIL_VERIFICATION = "mandatory", would wait forever for an
email a phone-only customer never gave."""

from allauth.account.models import EmailAddress
from allauth.account.stages import EmailVerificationStage


class VerifyEmailIfGivenStage(EmailVerificationStage):
    def handle(self):
        user = self.login.user
        phone_only = (
            user is not None
            and not self.login.email
            and not user.email
            and not EmailAddress.objects.filter(user_id=user.pk).exists()
        )
        if phone_only:
            # PhoneVerificationStage ran first and lets a login on only with the phone verified;
            # should it ever be switched off, a phone-only login stops here rather than goes in.
            return None, bool(user.phone_verified)
        return super().handle()
