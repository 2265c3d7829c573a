"""Provider webhooks: verify first, then parse into the normalized models of
:mod:`aftersale.pipeline.send_outcomes` (one module per provider, as django-anymail does).

Verification never trusts the request for what was signed: the SendGrid check runs over the
exact raw body, the Twilio check over ``PUBLIC_URL`` + the path and query Twilio called.
"""
