"""What a render parameter is: its type, its bounds, its rule, its checkpoint default.

The parameters themselves are the fields of `models.request.RenderRequest`, each declared
with `param(...)`; `models.request.PARAMS` reads them back. Everything else that lists
parameters derives from that one definition: the API schema, the CLI flags, the batch-file
columns, the nightly hero take, the manifest and the dashboard's submit form.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

from .errors import InputError

Scalar = str | int | float
#: what a nightly hero re-render does with a parameter of its parent take: copy it ("keep"),
#: record the value the hero checkpoint resolves it to ("resolve"), or leave it unset so the
#: hero checkpoint's own default applies ("checkpoint")
Hero = Literal["keep", "resolve", "checkpoint"]


@dataclass(frozen=True)
class Param:
    name: str
    type: type  #: str, int or float
    label: str  #: the submit form's label
    help: str
    default: Callable[[Any], Scalar | None] | None = None  #: spec -> the checkpoint's default; None: no default
    required: str | None = None  #: the message when it is missing (None: it may stay unset)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None  #: the bound every checkpoint shares (the API schema's)
    #: spec -> this checkpoint's own, lower maximum: what one take may ask of it
    limit: Callable[[Any], int] | None = None
    positive: bool = False  #: > 0 (an open lower bound)
    max_length: int | None = None  #: characters, for text (None: no bound)
    rule: Callable[[Any], str | None] | None = None  #: a further check: the message, or None when fine
    upper: bool = False  #: compared in upper case (modes)
    hero: Hero = "checkpoint"
    advanced: bool = False  #: the form folds it away
    long: bool = False  #: free text over several lines
    attr: str | None = None  #: where a resolved request holds it, when not under its own name

    def resolve(self, value: Any, spec: Any) -> Any:
        """The value to render with: the checkpoint's default when unset, checked; an
        InputError naming this parameter otherwise."""
        if value is None or (self.type is str and isinstance(value, str) and not value.strip()):
            if self.required:
                raise InputError(self.name, self.required)
            if self.default is None:
                return None
            value = self.default(spec)
        if self.upper and isinstance(value, str):
            value = value.upper()
        message = self._problem(value, spec)
        if message:
            raise InputError(self.name, message)
        return float(value) if self.type is float else value

    def _problem(self, value: Any, spec: Any) -> str | None:
        if self.choices and value not in self.choices:
            return f"unknown {self.name} {value!r}; choose one of {', '.join(self.choices)}"
        if self.type is str:
            if not isinstance(value, str):
                return f"{value!r} must be text"
            if self.max_length is not None and len(value) > self.max_length:
                return f"{len(value)} characters; at most {self.max_length}; shorten it"
            return text_problem(value) or (self.rule(value) if self.rule is not None else None)
        if self.rule is not None and (problem := self.rule(value)):
            return problem
        default = self.default(spec) if self.default else None
        hint = f" (the default is {default})" if default is not None else ""
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        fits = number and (self.type is float or isinstance(value, int))
        low, high = self.minimum, self.maximum
        if not fits or (low is not None and value < low) or (high is not None and value > high):
            kind = "an integer" if self.type is int else "a number"
            return f"{value!r} must be {kind}{self._range()}{hint}"
        if self.positive and value <= 0:
            return f"{value!r} must be a positive number{hint}"
        if self.limit is not None and value > (most := self.limit(spec)):
            return f"{value!r} is more than {spec.name} renders in one take; at most {most}{hint}"
        return None

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {_number(self.minimum)} to {_number(self.maximum)}"
        if self.maximum is not None:
            return f" up to {_number(self.maximum)}"
        return ""

    def most(self, spec: Any) -> float | None:
        """The largest value this checkpoint takes."""
        if self.limit is None:
            return self.maximum
        return min(self.limit(spec), self.maximum) if self.maximum is not None else self.limit(spec)

    def read(self, resolved: Any) -> Any:
        """This parameter's value in a resolved request."""
        return attrgetter(self.attr or self.name)(resolved)

    def describe(self, spec: Any) -> dict[str, Any]:
        """The submit form's description of this parameter for one checkpoint."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": {str: "string", int: "integer", float: "number"}[self.type],
            "label": self.label,
            "help": self.help,
            "default": self.default(spec) if self.default else None,
            "required": bool(self.required),
            "advanced": self.advanced,
            "long": self.long,
        }
        out.update(
            (k, v)
            for k, v in (
                ("choices", list(self.choices)),
                ("minimum", self.minimum),
                ("maximum", self.most(spec)),
                ("max_length", self.max_length),
            )
            if v not in (None, [])
        )
        return out


def param(type: type, label: str, help: str, *, value: Any = None, **facts: Any) -> Any:
    """A RenderRequest field that is a render parameter (unset: `value`, usually None = the
    checkpoint's default)."""
    return dataclasses.field(default=value, metadata={"param": dict(type=type, label=label, help=help, **facts)})


def params_of(cls: type) -> tuple[Param, ...]:
    """The parameters a request class declares, in field order."""
    return tuple(Param(name=f.name, **f.metadata["param"]) for f in dataclasses.fields(cls) if "param" in f.metadata)


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored and shown as text (None: it can): control characters
    other than tab and newlines, or a lone surrogate (not Unicode; the record would refuse it)."""
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        return "control characters are not allowed; remove them"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode text (a lone surrogate); send UTF-8 text"
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def multiple_of_16(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0 and value % 16 == 0:
        return None
    near = max(16, round(value / 16) * 16) if isinstance(value, int | float) and value > 0 else 480
    return f"{value!r} is not a positive multiple of 16 (e.g. {near})"


def four_k_plus_1(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 and (value - 1) % 4 == 0:
        return None
    near = max(1, round((value - 1) / 4) * 4 + 1) if isinstance(value, int | float) and value > 0 else 97
    return f"{value!r} is not of the form 4k+1 (e.g. {near})"


#: the samplers (models.sampler): flow-matching UniPC (2nd order), flow-matching Euler (1st order)
SAMPLERS = ("unipc", "euler")
#: the DiT's training timesteps: a given timestep t is the sigma t/1000
TRAIN_TIMESTEPS = 1000
TIMESTEPS_EXAMPLE = "1000,750,500,250"


def parse_timesteps(text: str) -> tuple[int, ...]:
    """A `timesteps` text as integers, e.g. "1000, 750,500,250" -> (1000, 750, 500, 250).

    A ValueError says what to fix when the text is not a strictly decreasing, comma-separated
    list of integers from 1 to 1000 (so at most 1000 of them).
    """
    example = f"e.g. {TIMESTEPS_EXAMPLE}"
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > TRAIN_TIMESTEPS:
        raise ValueError(f"{len(parts)} entries; at most {TRAIN_TIMESTEPS} timesteps, from 1000 down to 1")
    values: list[int] = []
    for part in parts:
        if not re.fullmatch(r"[0-9]{1,5}", part):
            what = "an empty entry" if not part else f"{part[:20]!r}"
            raise ValueError(f"{what} is not an integer; give integers from 1 to 1000 separated by commas ({example})")
        value = int(part)
        if not 1 <= value <= TRAIN_TIMESTEPS:
            raise ValueError(f"{value} is out of range; each timestep is from 1 to {TRAIN_TIMESTEPS} ({example})")
        if values and value >= values[-1]:
            raise ValueError(
                f"{value} follows {values[-1]}: the timesteps must strictly decrease; list them from high to low "
                f"without repeats ({example})"
            )
        values.append(value)
    return tuple(values)


def timestep_list(value: Any) -> str | None:
    """The rule of a `timesteps` text: None when parse_timesteps takes it, its message otherwise."""
    try:
        parse_timesteps(value)
    except ValueError as exc:
        return str(exc)
    return None
