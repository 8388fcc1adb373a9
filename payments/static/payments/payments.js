/* Payment pages: Stripe.js talks to Stripe from the browser, so card numbers and IBANs never
   reach our server. Works with real Stripe.js and with localstripe's stand-in (which must be
   called as Stripe(pk) without `new`, calls change handlers without an event, and has no
   Payment Element). */
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // A processor error (Stripe.js's or localstripe's `error` object) as a sentence in the page's
  // language, from payments/processor_errors.py: decline code, then code, then type; never the
  // processor's own English message ("Bad request").
  function messageFor(error) {
    var node = document.getElementById("processor-errors");
    var table = node ? JSON.parse(node.textContent) : {codes: {}, declines: {}, types: {}, fallback: ""};
    if (!error) { return ""; }
    return (error.decline_code && table.declines[error.decline_code]) ||
      (error.code && table.codes[error.code]) ||
      (error.type && table.types[error.type]) || table.fallback;
  }

  function setupAddMethod(root) {
    var stripe = Stripe(root.dataset.publishableKey);
    var card = stripe.elements().create("card");
    card.mount("#card-element");
    var errorBox = document.getElementById("method-error");
    var form = document.getElementById("add-method-form");
    var finish = document.getElementById("finish-form");
    var submit = document.getElementById("add-method-submit");
    function show(message) { errorBox.textContent = message || ""; }
    function selectedType() { return form.querySelector("input[name=method_type]:checked").value; }
    card.on("change", function (e) { show(e && e.error ? messageFor(e.error) : ""); });
    form.addEventListener("change", function () {
      var type = selectedType();
      form.querySelectorAll("[data-for]").forEach(function (el) { el.hidden = el.dataset.for !== type; });
    });
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      show("");
      var type = selectedType();
      var makeDefault = document.getElementById("make-default").checked;
      var iban = document.getElementById("sepa-iban").value.replace(/\s+/g, "");
      var holder = document.getElementById("sepa-name").value.trim();
      if (type === "sepa_debit" && (!iban || !holder)) { show(root.dataset.msgIban); return; }
      submit.disabled = true;
      try {
        var response = await fetch(root.dataset.setupUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"X-CSRFToken": csrfToken(), "Content-Type": "application/x-www-form-urlencoded"},
          body: new URLSearchParams({method_type: type}).toString()
        });
        var data = await response.json().catch(function () { return {}; });
        if (!response.ok) { show(data.error || root.dataset.msgFailed); return; }
        var result;
        if (type === "card") {
          result = await stripe.confirmCardSetup(data.client_secret, {payment_method: {card: card}});
        } else if (type === "sepa_debit") {
          result = await stripe.confirmSepaDebitSetup(data.client_secret, {payment_method: {
            sepa_debit: {iban: iban}, billing_details: {name: holder, email: root.dataset.email}}});
        } else {
          var back = new URL(root.dataset.returnUrl, window.location.href);
          if (makeDefault) back.searchParams.set("make_default", "on");
          result = await stripe.confirmPayPalSetup(data.client_secret, {return_url: back.toString()});
        }
        if (result && result.error) {
          show(messageFor(result.error));
          // Report the declined confirmation: the server counts it against the rate limit and
          // cancels the intent, so it cannot be confirmed again with another card number.
          fetch(finish.action, {
            method: "POST", credentials: "same-origin", keepalive: true,
            headers: {"X-CSRFToken": csrfToken(), "Content-Type": "application/x-www-form-urlencoded"},
            body: new URLSearchParams({setup_intent_id: data.setup_intent_id}).toString()
          }).catch(function () {});
          return;
        }
        finish.querySelector("input[name=setup_intent_id]").value = data.setup_intent_id;
        finish.querySelector("input[name=make_default]").value = makeDefault ? "on" : "";
        finish.submit();
      } catch (err) {
        show(root.dataset.msgUnreachable);
      } finally {
        submit.disabled = false;
      }
    });
  }

  function setupAuthenticate(form) {
    var stripe = Stripe(form.dataset.publishableKey);
    // The server reads the PaymentIntent back whatever happens here: the browser's answer is
    // never trusted, it only says "look now".
    stripe.confirmCardPayment(form.dataset.clientSecret).then(function () { form.submit(); },
                                                              function () { form.submit(); });
  }

  var root = document.getElementById("add-method");
  if (root) { setupAddMethod(root); }
  var complete = document.getElementById("complete-form");
  if (complete && complete.dataset.clientSecret) { setupAuthenticate(complete); }
})();
