"""Staff's two-factor setup ends in the admin (docs/console.md, "Two-factor setup")."""

from allauth.account.internal.flows.login import record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.views import ActivateTOTPView


class StaffActivateTOTPView(ActivateTOTPView):
    """allauth's "set up authenticator" page. Activating TOTP means typing a code the new
    authenticator made: the same proof as the code step of a login. So for staff it is recorded
    as that step, and the session that just set it up enters the admin without a second code
    (console.site.passed_two_factor reads these records). Recorded here, in the request, rather
    than on allauth's authenticator_added signal, which is sent after the commit."""

    def form_valid(self, form):
        response = super().form_valid(form)
        user = self.request.user
        if user.is_staff:
            authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
            record_authentication(
                self.request, user, method="mfa", type=authenticator.type, id=authenticator.pk, activated=True
            )
        return response
