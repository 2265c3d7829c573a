"""The web app: intake endpoints (later: webhooks, survey and unsubscribe pages)."""
