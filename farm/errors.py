"""Every error the dispatcher raises on purpose, under one root; the API maps each to HTTP
(farm.api.app's one handler) with the field it names as data: {"detail", "field"}."""

from __future__ import annotations


class FarmError(Exception):
    """Root of the farm's errors. `field` names what is wrong (None: the request as a
    whole); `message` says it in words, with the fix."""

    status = 500

    def __init__(self, message: str, *, field: str | None = None):
        self.message, self.field = message, field
        super().__init__(f"{field}: {message}" if field else message)


class NotFound(FarmError):
    """A take, batch or asset id that does not exist."""

    status = 404


class IllegalTransition(FarmError):
    """The take is not in a state that allows the action (e.g. cancel a finished take)."""

    status = 409


class IdempotencyConflict(FarmError):
    """The Idempotency-Key was already used with a different request body."""

    status = 409


class InvalidRequest(FarmError):
    """A field of the request is invalid; `field` names it, the message says the fix."""

    status = 422

    def __init__(self, field: str, message: str):
        super().__init__(message, field=field)


class PayloadTooLarge(FarmError):
    """An upload or a body over its size limit (refused before it is read where possible)."""

    status = 413


class UnsupportedMedia(FarmError):
    """An upload that is neither a supported image nor readable audio."""

    status = 415


class StorageError(FarmError):
    """The object store failed (after retries)."""

    status = 503


class ObjectMissing(StorageError):
    """An object the record names is not in the store (deleted, or lost with a bucket):
    retrying cannot bring it back."""

    status = 404


class FlowerUnavailable(FarmError):
    """Flower, behind /flower, does not answer."""

    status = 503


class Unauthenticated(FarmError):
    """No valid session cookie or API token."""

    status = 401


class Forbidden(FarmError):
    """Signed in, but the role (or ownership) does not allow the action."""

    status = 403


class TooManyAttempts(FarmError):
    """Too many failed logins for this name from this address; retry after `retry_after` s."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)


class WorkerLost(FarmError):
    """The worker holding an attempt vanished (killed, machine lost)."""
