"""Stripe's PayPal payment method, emulated on localstripe, which has none (docs/payment-methods.md).

Only the shapes our flow meets, as Stripe documents them for PayPal through Stripe:

* ``POST /v1/setup_intents`` with ``payment_method_types[]=paypal``: a SetupIntent for PayPal;
* ``POST /v1/setup_intents/{id}/confirm`` with ``payment_method_data[type]=paypal`` and a
  ``return_url``: ``status=requires_action`` and ``next_action.type=redirect_to_url`` whose
  ``redirect_to_url.url`` is PayPal's approval page (here ``/_paypal/approve/{id}``) and
  ``redirect_to_url.return_url`` ours;
* the approval page: "Approve" makes the SetupIntent ``succeeded`` with a ``paypal`` payment
  method (``paypal.payer_email``, ``paypal.payer_id``, ``paypal.country``) and sends the browser
  to ``return_url?setup_intent=…&setup_intent_client_secret=…&redirect_status=succeeded``;
  "Cancel" leaves it ``requires_payment_method`` with a ``last_setup_error`` and
  ``redirect_status=failed``;
* Stripe.js's ``confirmPayPalSetup(clientSecret, {return_url})``, appended to localstripe's
  Stripe.js: it confirms and sends the browser to the approval page, as the real one does.

A PaymentIntent charging the saved PayPal method (off-session renewals, pay-now) is localstripe's
own: it succeeds at once, as a PayPal billing agreement does. Not emulated: PayPal's own login,
disputes, and ``setup_future_usage`` on a PaymentIntent that first meets PayPal (we always save the
method with a SetupIntent first).
"""

from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import PaymentMethod, SetupIntent, StripeObject, random_id
from localstripe.server import get_api_key, get_post_data, json_response

APPROVE_PATH = "/_paypal/approve/"

CONFIRM_PAYPAL_SETUP_JS = r"""
;(function () {
  // localstripe_paypal.py: Stripe.js's confirmPayPalSetup, which localstripe lacks.
  const makeStripe = Stripe;
  Stripe = (apiKey, options) => {
    const stripe = makeStripe(apiKey, options);
    stripe.confirmPayPalSetup = async (clientSecret, data) => {
      const seti = clientSecret.match(/^(seti_\w+)_secret_/)[1];
      const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/setup_intents/${seti}/confirm`, {
        method: 'POST',
        body: JSON.stringify({
          key: apiKey, client_secret: clientSecret,
          payment_method_data: {type: 'paypal'},
          return_url: (data || {}).return_url,
        }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status !== 200 || body.error) {
        return {error: body.error || {message: 'PayPal could not be reached.'}};
      }
      window.location.assign(body.next_action.redirect_to_url.url);
      return new Promise(() => {});  // the page is leaving
    };
    return stripe;
  };
})();
"""

APPROVE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>PayPal (localstripe)</title></head>
<body style="font-family: sans-serif; max-width: 30rem; margin: 2rem auto; padding: 0 1rem">
<h1>PayPal</h1><p>Emulated by localstripe: approve a billing agreement with <b>{merchant}</b>
so that future payments are taken without you.</p>
<form method="post"><button name="decision" value="approve" id="paypal-approve">Agree and continue</button>
<button name="decision" value="cancel" id="paypal-cancel">Cancel and return</button></form></body></html>
"""


def _paypal_method(email: str) -> PaymentMethod:
    method = PaymentMethod.__new__(PaymentMethod)  # PaymentMethod() accepts only card and SEPA
    StripeObject.__init__(method)
    method.type = "paypal"
    method.billing_details = {"email": email, "name": "PayPal Buyer", "address": None, "phone": None}
    method.paypal = {"payer_email": email, "payer_id": "PAYER" + random_id(8).upper(), "country": "US"}
    method.customer = None
    method.metadata = {}
    return method


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def _create_setup_intent(request, data):
    types = data.pop("payment_method_types")
    if types != ["paypal"]:
        raise UserError(400, "Bad request")
    known = {key: data[key] for key in ("customer", "usage", "metadata") if key in data}
    if set(data) - set(known):
        raise UserError(400, "Unexpected " + ", ".join(sorted(set(data) - set(known))))
    intent = SetupIntent(payment_method_types=["card"], **known)
    intent.payment_method_types = ["paypal"]
    intent.last_setup_error = None
    intent._paypal = True
    return json_response(intent._export())


async def _confirm_setup_intent(request, intent, data):
    if data.get("client_secret") not in (None, intent.client_secret):
        raise UserError(401, "Unauthorized")
    return_url = data.get("return_url")
    if not isinstance(return_url, str) or not return_url.startswith(("http://", "https://")):
        raise UserError(400, "A return_url is required to confirm a PayPal SetupIntent.")
    customer_email = "buyer@example.com"
    method = _paypal_method(customer_email)
    intent.payment_method = method.id
    intent.status = "requires_action"
    intent._return_url = return_url
    approve = f"{request.scheme}://{request.host}{APPROVE_PATH}{intent.id}"
    intent.next_action = {"type": "redirect_to_url", "redirect_to_url": {"url": approve, "return_url": return_url}}
    return json_response(intent._export())


async def approve_page(request):
    intent = SetupIntent._api_retrieve(request.path[len(APPROVE_PATH) :])
    if not getattr(intent, "_paypal", False) or intent.status != "requires_action":
        raise UserError(404, "No such PayPal approval")
    if request.method == "GET":
        return web.Response(text=APPROVE_PAGE.format(merchant="Axis eSIM"), content_type="text/html")
    form = await request.post()
    if form.get("decision") == "approve":
        intent.status = "succeeded"
        intent.next_action = None
        status = "succeeded"
    else:
        intent.status = "requires_payment_method"
        intent.next_action = None
        intent.payment_method = None
        intent.last_setup_error = {
            "code": "setup_intent_authentication_failure",
            "message": "The customer did not approve the PayPal billing agreement.",
            "type": "invalid_request_error",
        }
        status = "failed"
    target = _with_query(
        intent._return_url,
        {"setup_intent": intent.id, "setup_intent_client_secret": intent.client_secret, "redirect_status": status},
    )
    raise web.HTTPSeeOther(target)


def _authorised(request, data, *, publishable_key_allowed: bool) -> None:
    """localstripe's own rule (its auth_middleware, which runs after this one): the secret key,
    or for a confirmation from the browser the publishable key in the body."""
    if get_api_key(request) is not None:
        return
    key = data.get("key")
    if publishable_key_allowed and isinstance(key, str) and key.startswith("pk_"):
        return
    raise UserError(401, "Unauthorized")


@web.middleware
async def paypal_middleware(request, handler):
    path = request.path
    if request.method == "POST" and path == "/v1/setup_intents":
        data = await get_post_data(request)
        if "paypal" in (data.get("payment_method_types") or []):
            _authorised(request, data, publishable_key_allowed=False)
            return await _create_setup_intent(request, dict(data))
    elif request.method == "POST" and path.startswith("/v1/setup_intents/") and path.endswith("/confirm"):
        data = await get_post_data(request, remove_auth=False)
        method_data = data.get("payment_method_data") or {}
        intent = SetupIntent._api_retrieve(path.split("/")[3])
        if getattr(intent, "_paypal", False) or method_data.get("type") == "paypal":
            _authorised(request, data, publishable_key_allowed=True)
            data.pop("key", None)
            return await _confirm_setup_intent(request, intent, data)
    elif path.startswith(APPROVE_PATH):
        return await approve_page(request)  # the browser's page: no API key, as at PayPal
    elif request.method == "GET" and path == "/js.stripe.com/v3/":
        response = await handler(request)
        return web.Response(text=response.text + CONFIRM_PAYPAL_SETUP_JS, content_type="application/javascript")
    return await handler(request)


def install(app) -> None:
    """Called by localstripe_server.py before the app starts (its middlewares freeze then): after
    localstripe's error middleware (UserError -> JSON), before its auth (the approval page is a
    browser's page, without an API key)."""
    app.middlewares.insert(1, paypal_middleware)
    app.router.add_route("GET", APPROVE_PATH + "{id}", approve_page)
    app.router.add_route("POST", APPROVE_PATH + "{id}", approve_page)
