"""The domain's refusals: one hierarchy for every capability.

A service refuses by raising one of these with a message a person can read (Swedish). The web
layer's one error handler (`slussen.app`) answers each kind with its status and the message, and
the request's transaction is rolled back (`slussen.db`); CLI commands print the message. A
capability may declare a thin subclass next to its service where the name helps a reader
(`TransitionRefused(Invalid)`, `StaleCase(Conflict)`), never a second hierarchy.

This module imports nothing of slussen: every layer may raise these.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A request refused by a rule; `str(error)` is the Swedish message."""

    #: The HTTP status the one error handler answers with.
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class NotPermitted(DomainError):
    """The user may see the object but their role may not do this (403)."""

    status = 403


class NotFound(DomainError):
    """The object does not exist, or lies outside the user's units (404: never a hint that it
    exists)."""

    status = 404

    def __init__(self, message: str = "Sidan finns inte.") -> None:
        super().__init__(message)


class Invalid(DomainError):
    """A refused input or a refused workflow event (400); views showing a form catch it and show
    the form again with the message, next to `field` when the service names the field the
    refusal is about."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The input the refusal is about ("hsa_id", "username", ...), when it is about one.
        self.field = field


class Conflict(DomainError):
    """Someone else changed the object meanwhile, or it was already decided (409)."""

    status = 409
