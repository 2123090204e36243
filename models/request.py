"""A render request and its validation: every bad field is an InputError that names it.

`RenderRequest`'s fields declared with `param(...)` are the render parameters of a take,
defined here once (`PARAMS`); `checkpoint`, `image` and `audio` say what renders and from
which files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError
from .guidance import Scales
from .params import Param, four_k_plus_1, multiple_of_16, param, params_of
from .probe import probe_audio, probe_image
from .specs import MODES, ModelSpec, get_spec

MAX_SIDE = 2048  #: pixels: a 1080p frame either way up fits; nothing larger is a take's
MAX_FRAMES = 1501  #: 60 s at 25 fps


def _guidance(which: str, what: str) -> Any:
    """A guidance scale parameter: the resolved request holds it in `scales`."""
    label, help = f"{which.capitalize()} guidance", f"how strongly {what} steers"
    default = lambda spec: getattr(spec.guidance, which)
    return param(float, label, help, default=default, minimum=-100, maximum=100, advanced=True, attr=f"scales.{which}")


@dataclass(frozen=True)
class RenderRequest:
    prompt: str = param(
        str,
        "Prompt",
        "the shot in words",
        required="the prompt is empty; describe the shot in words",
        hero="keep",
        long=True,
        max_length=4000,  # characters: past the 512 umT5 tokens the text encoder reads (specs.text_len)
    )
    checkpoint: str = "tiny"
    image: str | None = None  #: path to the reference image (modes with I)
    audio: str | None = None  #: path to the audio track (modes with A)
    negative_prompt: str | None = param(
        str,
        "Negative prompt",
        "what the shot must not show",
        default=lambda s: s.negative_prompt,
        hero="keep",
        max_length=4000,
    )
    mode: str | None = param(
        str,
        "Mode",
        "which inputs condition the take: T(ext), I(mage), A(udio); unset: from the inputs given",
        choices=MODES,
        upper=True,
        hero="keep",
    )
    seed: int = param(
        int, "Seed", "the noise seed", value=0, default=lambda s: 0, minimum=0, maximum=2**63 - 1, hero="keep"
    )
    width: int | None = param(
        int, "Width", "pixels, a multiple of 16", default=lambda s: s.width, rule=multiple_of_16, hero="resolve",
        maximum=MAX_SIDE,
    )  # fmt: skip
    height: int | None = param(
        int, "Height", "pixels, a multiple of 16", default=lambda s: s.height, rule=multiple_of_16, hero="resolve",
        maximum=MAX_SIDE,
    )  # fmt: skip
    frames: int | None = param(
        int,
        "Frames",
        "video frames at 25 fps, of the form 4k+1",
        default=lambda s: s.frames,
        rule=four_k_plus_1,
        maximum=MAX_FRAMES,
        hero="keep",
    )
    steps: int | None = param(int, "Steps", "denoising steps", default=lambda s: s.steps, minimum=1, maximum=1000)
    shift: float | None = param(
        float, "Shift", "the sampler's timestep shift", default=lambda s: s.shift, positive=True, maximum=100,
        advanced=True,
    )  # fmt: skip
    scale_text: float | None = _guidance("text", "the prompt")
    scale_audio: float | None = _guidance("audio", "the audio")
    scale_image: float | None = _guidance("image", "the reference image")

    def resolved(self, probe_files: bool = True) -> ResolvedRequest:
        """Apply the checkpoint's defaults and check every field.

        probe_files: open the image and audio to check they decode (off where the caller
        checks its inputs another way, e.g. the farm's content-addressed uploads).
        """
        spec = get_spec(self.checkpoint)
        values = {p.name: p.resolve(getattr(self, p.name), spec) for p in PARAMS}
        mode = values.pop("mode") or "T" + ("I" if self.image else "") + ("A" if self.audio else "")
        image = self.image if "I" in mode else None
        audio = self.audio if "A" in mode else None
        if "I" in mode and not image:
            raise InputError(
                "image", f"mode {mode} needs a reference image; give one or use mode {mode.replace('I', '')}"
            )
        if "A" in mode and not audio:
            raise InputError("audio", f"mode {mode} needs an audio track; give one or use mode {mode.replace('A', '')}")
        if probe_files and image:
            probe_image(image)  # unreadable or unsupported: fail before any model loads
        if probe_files and audio:
            probe_audio(audio)
        scales = Scales(text=values.pop("scale_text"), audio=values.pop("scale_audio"), image=values.pop("scale_image"))
        return ResolvedRequest(spec=spec, mode=mode, scales=scales, image=image, audio=audio, **values)


#: the render parameters, in their declared order
PARAMS: tuple[Param, ...] = params_of(RenderRequest)


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with every default applied and every field checked: what the engine renders."""

    spec: ModelSpec
    prompt: str
    negative_prompt: str
    mode: str
    seed: int
    image: str | None
    audio: str | None
    width: int
    height: int
    frames: int
    steps: int
    shift: float
    scales: Scales

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.spec.vae.stride[0] + 1

    def record(self) -> dict[str, Any]:
        """Every render parameter's resolved value, by name (the manifest's `request`)."""
        return {p.name: p.read(self) for p in PARAMS}

    def with_(self, **changes) -> ResolvedRequest:
        return replace(self, **changes)
