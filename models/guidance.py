"""Time-adaptive classifier-free guidance, per checkpoint and mode.

Every HuMo guidance rule is a chain of passes from least to most conditioned,
c0, c1, ..., ck, combined as  c0 + sum_i s_i * (c_i - c_{i-1}).

1.7B (image by overwriting the reference frame), defaults text 7.0, audio 7.5, image 4.0:
  TIA: null -> text -> text+audio -> text+audio+image     (4 passes)
  TA:  null -> text -> text+audio                          (3 passes)
17B (image by channel concat), defaults text 5.0, audio 5.5:
  TIA, t > 980: image -> text+image -> text+image+audio    (negative keeps the image)
  TIA, later:   null  -> text+image -> text+image+audio    (text scale - 2)
  TA:  null -> text -> text+audio
The reference ships TA and TIA; T and TI follow the same rules without the missing input.

Guidance "off" (for guidance-distilled LoRAs): one pass per step, with every input the mode
has (text, plus image and audio as the mode says), no negative or null pass; the scales are
unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: a request's `guidance`: "on", the checkpoint's chain above; "off", one fully conditioned pass
GUIDANCE = ("on", "off")


@dataclass(frozen=True)
class GuidanceDefaults:
    """A checkpoint's guidance scales and switch, as its ModelSpec states them."""

    text: float
    audio: float
    image: float = 0.0  #: only the 1.7B uses a separate image scale (its TIA has 4 passes)
    #: 17B: above this timestep the negative keeps the image; below it the negative is fully
    #: null and the text scale drops by `late_text_drop`. None: no switch (1.7B).
    switch_timestep: float | None = None
    late_text_drop: float = 0.0


class GuidedSpec(Protocol):
    """What guidance needs of a checkpoint (models.specs.ModelSpec is one); specs depends on us, not back."""

    @property
    def image_conditioning(self) -> str: ...  # "overwrite" (1.7B) or "concat" (17B)

    @property
    def guidance(self) -> GuidanceDefaults: ...


@dataclass(frozen=True)
class Condition:
    """Which inputs one DiT pass sees; an absent input is its null (empty prompt, zeros)."""

    text: bool
    image: bool
    audio: bool


@dataclass(frozen=True)
class Scales:
    text: float
    audio: float
    image: float


def default_scales(spec: GuidedSpec) -> Scales:
    g = spec.guidance
    return Scales(text=g.text, audio=g.audio, image=g.image)


def full_condition(mode: str) -> Condition:
    """Every input the mode has: the text, and the image and audio where the mode says."""
    return Condition(True, "I" in mode, "A" in mode)


def passes_for(
    spec: GuidedSpec, mode: str, t: float, scales: Scales | None = None, guidance: str = "on"
) -> list[tuple[Condition, float]]:
    """The chain for one step: [(condition, scale)], the first one's scale unused (0).

    guidance "off": the one fully conditioned pass, [(full_condition(mode), 0.0)].
    """
    if guidance == "off":
        return [(full_condition(mode), 0.0)]
    if guidance != "on":
        raise ValueError(f"unknown guidance {guidance!r}; choose one of {', '.join(GUIDANCE)}")
    s = scales or default_scales(spec)
    image, audio = "I" in mode, "A" in mode
    if spec.image_conditioning == "overwrite" or not image:
        chain = [(Condition(False, False, False), 0.0), (Condition(True, False, False), s.text)]
        if audio:
            chain.append((Condition(True, False, True), s.audio))
        if image:
            chain.append((Condition(True, True, audio), s.image))
        return chain
    # channel-concat image conditioning (17B): the image joins the text pass
    g = spec.guidance
    early = g.switch_timestep is not None and t > g.switch_timestep
    negative = Condition(False, True, False) if early else Condition(False, False, False)
    text_scale = s.text if early else s.text - g.late_text_drop
    chain = [(negative, 0.0), (Condition(True, True, False), text_scale)]
    if audio:
        chain.append((Condition(True, True, True), s.audio))
    return chain


def combine(predictions: list, scales: list[float]):
    """c0 + sum_i s_i (c_i - c_{i-1}) over the chain's predictions."""
    out = predictions[0]
    for prev, cur, scale in zip(predictions, predictions[1:], scales[1:]):
        out = out + scale * (cur - prev)
    return out
