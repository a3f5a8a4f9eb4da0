"""The djq exception tree. Everything djq raises on purpose derives from DjqError."""
from __future__ import annotations

import builtins

from django.core.exceptions import ImproperlyConfigured


class DjqError(Exception):
    """Base class of every error djq raises on purpose."""


class ConfigurationError(DjqError, ImproperlyConfigured):
    """A DJQ_* setting or a task option has a value djq cannot use."""


class TaskOptionError(ConfigurationError, TypeError):
    """``@task`` was given an unknown option or an option of the wrong type."""


class NotRegistered(DjqError, KeyError):
    """No task with this name is registered in this process."""

    def __str__(self) -> str:
        return f"task {self.args[0]!r} is not registered (is its app in INSTALLED_APPS and its module named tasks.py?)"


class EncodeError(DjqError, TypeError):
    """Task arguments or a return value cannot be encoded with the configured serializer."""


class MessageError(DjqError, ValueError):
    """A message received from the broker is not a valid djq task message."""


class ContentDisallowed(MessageError):
    """A message uses a content type that DJQ_ACCEPT_CONTENT does not allow."""


class TimeoutError(DjqError, builtins.TimeoutError):  # noqa: A001 - also a builtins.TimeoutError
    """``AsyncResult.get`` waited longer than its timeout."""


class TaskError(DjqError):
    """A task failed with an exception that cannot be rebuilt in this process."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


class TaskRevokedError(DjqError):
    """The task was revoked (or expired) before it could finish."""


class SoftTimeLimitExceeded(DjqError):
    """Raised inside a task when its soft time limit is reached, so it can clean up."""


class TimeLimitExceeded(DjqError):
    """The task ran past its hard time limit and was stopped."""


class WorkerLostError(DjqError):
    """The process running the task died before the task finished."""


class PublishError(DjqError):
    """The broker did not accept a message."""


class BrokerURLError(ConfigurationError, PublishError):
    """DJQ_BROKER_URL is not a URL djq can use (not a URL, unknown scheme, unknown database alias)."""


class MissingExtraError(ConfigurationError, PublishError):
    """The broker needs a package that is not installed; the message names the extra to install."""


class BrokerUnreachable(PublishError):
    """The broker could not be reached (refused, timed out, name not resolved) after the retries."""


class Retry(DjqError):
    """Raised by ``self.retry()``: the task was sent again and this run ends in RETRY.

    Let it propagate out of the task body (re-raise it if you catch ``Exception``).
    """

    def __init__(self, reason: BaseException | str | None = None, when: float | None = None) -> None:
        self.reason = reason
        self.when = when
        text = f"retry in {when:g}s" if when is not None else "retry"
        if reason is not None:
            text += f": {type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else f": {reason}"
        super().__init__(text)


class MaxRetriesExceededError(DjqError):
    """A task asked to be retried more times than its ``max_retries`` allows."""


class ChordError(DjqError):
    """A task in a chord's header failed, so the chord's body cannot run."""
