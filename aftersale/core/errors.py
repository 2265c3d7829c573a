"""The small error hierarchy: every error carries a message a user can act on."""

from __future__ import annotations

from dataclasses import dataclass


class AftersaleError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(AftersaleError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a marketer's file: where, what, and how to fix it."""

    path: str
    line: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class DefinitionError(AftersaleError):
    """Journeys, segments or content are invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EventError(AftersaleError):
    """An inbound event is malformed; the message says what to fix."""


class ProviderError(AftersaleError):
    """A channel provider refused or failed a send; carries the provider's own code."""

    def __init__(self, provider: str, message: str, code: str | None = None,
                 status: int | None = None):
        self.provider, self.code, self.status = provider, code, status
        super().__init__(f"{provider}: {message}" + (f" (code {code})" if code else ""))


class TransientProviderError(ProviderError):
    """Worth retrying later: 429, 5xx, timeouts, refused connections."""

    def __init__(self, provider: str, message: str, code: str | None = None,
                 status: int | None = None, retry_after: float | None = None):
        super().__init__(provider, message, code, status)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """Retrying will not help: invalid address, unsubscribed, rejected content."""


class WebhookRejected(AftersaleError):
    """A webhook failed verification (or cannot be verified): answer ``status``, store nothing.

    403 for a request that is not provably from the provider (bad or missing signature, stale
    timestamp); 503 when we cannot verify at all because a setting is missing, so the provider
    keeps retrying until the operator fixes the configuration.
    """

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)
