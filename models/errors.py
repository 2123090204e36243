"""Every error the inference engine raises on purpose, under one root."""

from __future__ import annotations


class ModelsError(Exception):
    """Root of the engine's errors; anything else escaping `render` is a bug."""


class InputError(ModelsError, ValueError):
    """A request field is invalid. `field` names it; the message says what to do instead."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class CheckpointError(ModelsError):
    """A weights file is missing, unreadable, or does not match the architecture.

    The message names the file and, for a key mismatch, every offending key.
    """


class RenderCanceled(ModelsError):
    """`on_step` asked to stop; raised between denoising steps, never mid-step."""


class GroupSizeError(ModelsError, ValueError):
    """The sequence-parallel group size does not divide the model's head count."""


class ShapeError(ModelsError, ValueError):
    """A tensor handed to a model has the wrong shape; the message names it and what was expected."""
