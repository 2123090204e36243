"""A render request and its validation: every bad field is an InputError that names it.

`RenderRequest`'s fields declared with `param(...)` are the render parameters of a take,
defined here once (`PARAMS`); `checkpoint`, `image` and `audio` say what renders and from
which files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError
from .guidance import GUIDANCE, Scales
from .params import (
    SAMPLERS,
    TIMESTEPS_EXAMPLE,
    TRAIN_TIMESTEPS,
    Param,
    four_k_plus_1,
    multiple_of_16,
    param,
    params_of,
    parse_timesteps,
    timestep_list,
)
from .probe import probe_audio, probe_image
from .specs import MAX_FRAMES, MODES, ModelSpec, get_spec
from .windows import DEFAULT_OVERLAP, MAX_OVERLAP, Window, plan

#: what sets a take's length: its `frames`, or its audio track's length
FITS = ("frames", "audio")
#: the bounds every checkpoint shares; each checkpoint's own are lower (`ModelSpec.limits`)
MAX_SIDE = 2048  #: pixels: a 1080p frame either way up fits; nothing larger is a take's
MAX_LORAS = 8  #: LoRAs stacked on one take
MAX_LORA_STRENGTH = 10.0  #: either way: past it a LoRA swamps the weights it is added to


@dataclass(frozen=True)
class LoraUse:
    """One LoRA of a take's stack: its file (on a worker; its sha256 where the farm checks a
    take) and how strongly it applies (0 changes nothing)."""

    path: str
    strength: float = 1.0


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
    loras: tuple[LoraUse, ...] = ()  #: LoRAs stacked on the DiT, in order
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
        maximum=MAX_SIDE, limit=lambda s: s.limits.side,
    )  # fmt: skip
    height: int | None = param(
        int, "Height", "pixels, a multiple of 16", default=lambda s: s.height, rule=multiple_of_16, hero="resolve",
        maximum=MAX_SIDE, limit=lambda s: s.limits.side,
    )  # fmt: skip
    frames: int | None = param(
        int,
        "Frames",
        "video frames at 25 fps, of the form 4k+1",
        default=lambda s: s.frames,
        rule=four_k_plus_1,
        maximum=MAX_FRAMES,
        limit=lambda s: s.limits.frames,
        hero="keep",
    )
    fit: str | None = param(
        str,
        "Fit",
        "frames: the clip is `frames` long; audio: the clip covers the whole audio track (its length in "
        "frames, rounded up to 4k+1), frames may then stay unset",
        choices=FITS,
        default=lambda s: "frames",
        hero="keep",
    )
    overlap: int | None = param(
        int,
        "Overlap",
        "latent frames (4 video frames each) each window of a long take shares with the one before it, held "
        "to that window's latents; takes up to the checkpoint's native length are one window",
        default=lambda s: DEFAULT_OVERLAP,
        minimum=1,
        maximum=MAX_OVERLAP,
        hero="keep",
        advanced=True,
    )
    colour_hold: str | None = param(
        str,
        "Colour hold",
        "on: each window of a long take keeps the first window's colour (its latents' per-channel mean and "
        "spread), eased in across the overlap; off: each window's own",
        choices=("off", "on"),
        default=lambda s: "off",
        hero="keep",
        advanced=True,
    )
    steps: int | None = param(int, "Steps", "denoising steps", default=lambda s: s.steps, minimum=1, maximum=1000)
    shift: float | None = param(
        float, "Shift", "the sampler's timestep shift", default=lambda s: s.shift, positive=True, maximum=100,
        advanced=True,
    )  # fmt: skip
    sampler: str | None = param(
        str,
        "Sampler",
        "unipc: flow-matching UniPC (2nd order, the reference's); euler: flow-matching Euler (1st order), as "
        "step-distilled models use",
        choices=SAMPLERS,
        default=lambda s: "unipc",
        hero="checkpoint",
        advanced=True,
    )
    timesteps: str | None = param(
        str,
        "Timesteps",
        f"the DiT's timesteps, strictly decreasing integers from {TRAIN_TIMESTEPS} to 1 separated by commas "
        f"(e.g. {TIMESTEPS_EXAMPLE}, as distilled models use); steps is then their count and shift does not "
        "apply; unset: the schedule from steps and shift",
        rule=timestep_list,
        max_length=5 * TRAIN_TIMESTEPS,  # characters: every timestep from 1000 to 1 takes 3,893
        hero="checkpoint",
        advanced=True,
    )
    guidance: str | None = param(
        str,
        "Guidance",
        "on: the checkpoint's guidance passes each step; off: one DiT pass per step with every input (for "
        "guidance-distilled LoRAs), the guidance scales unused",
        choices=GUIDANCE,
        default=lambda s: "on",
        hero="checkpoint",
        advanced=True,
    )
    scale_text: float | None = _guidance("text", "the prompt")
    scale_audio: float | None = _guidance("audio", "the audio")
    scale_image: float | None = _guidance("image", "the reference image")

    def resolved(self, probe_files: bool = True, audio_seconds: float | None = None) -> ResolvedRequest:
        """Apply the checkpoint's defaults and check every field.

        probe_files: open the image and audio to check they decode (off where the caller
        checks its inputs another way, e.g. the farm's content-addressed uploads).
        audio_seconds: the audio's length where the caller knows it (fit "audio" reads it from
        the file otherwise; with neither, frames stays as given).
        """
        spec = get_spec(self.checkpoint)
        values = {p.name: p.resolve(getattr(self, p.name), spec) for p in PARAMS}
        if values["timesteps"] is not None:  # a given schedule: steps is its length
            given = parse_timesteps(values["timesteps"])
            if self.steps is not None and self.steps != len(given):
                raise InputError(
                    "timesteps",
                    f"{len(given)} timesteps given but steps is {self.steps}; leave steps unset (it is then "
                    f"{len(given)}) or give as many timesteps as steps",
                )
            values["steps"], values["timesteps"] = len(given), ",".join(map(str, given))
        mode = values.pop("mode") or "T" + ("I" if self.image else "") + ("A" if self.audio else "")
        image = self.image if "I" in mode else None
        audio = self.audio if "A" in mode else None
        if "I" in mode and not image:
            raise InputError(
                "image", f"mode {mode} needs a reference image; give one or use mode {mode.replace('I', '')}"
            )
        if "A" in mode and not audio:
            raise InputError("audio", f"mode {mode} needs an audio track; give one or use mode {mode.replace('A', '')}")
        if values["fit"] == "audio":
            if not audio:
                raise InputError(
                    "fit", f"fit audio needs an audio track, and mode {mode} has none; give one or fit frames"
                )
            seconds = audio_seconds if audio_seconds is not None else probe_audio(audio) if probe_files else None
            if seconds is not None:
                values["frames"] = _fitted_frames(spec, self.frames, seconds)
        _check_tokens(spec, values["frames"], values["height"], values["width"])
        _check_pixels(spec, values["frames"], values["height"], values["width"])
        if probe_files and image:
            probe_image(image)  # unreadable or unsupported: fail before any model loads
        if probe_files and audio:
            probe_audio(audio)
        scales = Scales(text=values.pop("scale_text"), audio=values.pop("scale_audio"), image=values.pop("scale_image"))
        loras = _check_loras(self.loras)
        return ResolvedRequest(spec=spec, mode=mode, scales=scales, image=image, audio=audio, loras=loras, **values)


def _fitted_frames(spec: ModelSpec, given: int | None, seconds: float) -> int:
    """The frames (4k+1) that cover `seconds` of audio, within the checkpoint's maximum."""
    most = min(MAX_FRAMES, spec.limits.frames)
    if not seconds * spec.fps >= 1:  # also NaN
        raise InputError(
            "fit", f"the audio is {seconds:.2f} s, shorter than one frame: nothing to fit; fit frames and give frames"
        )
    need = math.ceil(round(seconds * spec.fps, 6))  # the frames that hear the audio to its end
    frames = need + (1 - need) % 4
    if frames > most:
        raise InputError(
            "fit",
            f"the audio is {seconds:.1f} s, {frames} frames; a take is at most {most} frames "
            f"({most / spec.fps:.2f} s): cut the audio, or fit frames with frames {most} (its first seconds)",
        )
    if given is not None and given != frames:
        raise InputError(
            "frames",
            f"{given} frames given but fit audio makes {frames} (the audio's {seconds:.2f} s); leave frames unset "
            "or fit frames",
        )
    return frames


def _check_tokens(spec: ModelSpec, frames: int, height: int, width: int) -> None:
    """Size and length together within the checkpoint's token budget for one window, naming the
    frames that fit."""
    tokens, most = spec.window_tokens(frames, height, width), spec.limits.tokens
    if tokens <= most:
        return
    top = min(frames, spec.window_frames)
    fits = max((f for f in range(1, top, 4) if spec.tokens(f, height, width) <= most), default=None)
    fix = f"ask for at most {fits} frames at this size, or a smaller size" if fits else "ask for a smaller size"
    what = f"{frames} frames" if frames <= spec.window_frames else f"windows of {top} frames"
    raise InputError(
        "frames",
        f"{what} at {width}x{height} are {tokens:,} tokens, more than {spec.name} renders in one take "
        f"({most:,}); {fix}",
    )


def _check_pixels(spec: ModelSpec, frames: int, height: int, width: int) -> None:
    """The decoded clip within the checkpoint's pixel budget (what a worker holds of one take)."""
    pixels, most = frames * height * width, spec.limits.pixels
    if pixels <= most:
        return
    fits = (most // (height * width) - 1) // 4 * 4 + 1
    raise InputError(
        "frames",
        f"{frames} frames at {width}x{height} are {pixels:,} pixels, more than {spec.name} renders in one take "
        f"({most:,}); ask for at most {fits} frames at this size, or a smaller size",
    )


def _check_loras(loras: tuple[LoraUse, ...]) -> tuple[LoraUse, ...]:
    if len(loras) > MAX_LORAS:
        raise InputError("loras", f"{len(loras)} LoRAs on one take; stack at most {MAX_LORAS}")
    for i, use in enumerate(loras):
        if not use.path:
            raise InputError(f"loras[{i}].asset", "no LoRA given; name an uploaded LoRA by its sha256")
        strength = use.strength
        number = isinstance(strength, int | float) and not isinstance(strength, bool) and math.isfinite(strength)
        if not number or abs(strength) > MAX_LORA_STRENGTH:
            raise InputError(
                f"loras[{i}].strength",
                f"{strength!r} must be a number from -{MAX_LORA_STRENGTH:g} to {MAX_LORA_STRENGTH:g}",
            )
    return tuple(LoraUse(use.path, float(use.strength)) for use in loras)


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
    loras: tuple[LoraUse, ...] = ()
    sampler: str = "unipc"
    #: the DiT's timesteps as given ("1000,750,500,250", normalized), None: from steps and shift
    timesteps: str | None = None
    guidance: str = "on"
    fit: str = "frames"
    overlap: int = DEFAULT_OVERLAP
    colour_hold: str = "off"

    @property
    def windows(self) -> tuple[Window, ...]:
        """The windows the take renders as (one when it fits the checkpoint's native length)."""
        return plan(self.latent_frames, self.spec.window_latents, self.overlap)

    @property
    def step_tokens(self) -> int:
        """DiT tokens of one step over every window (a step's work; one clip's tokens when it is one window)."""
        stride = self.spec.vae.stride[0]
        return sum(self.spec.tokens(stride * (w.length - 1) + 1, self.height, self.width) for w in self.windows)

    @property
    def given_timesteps(self) -> tuple[int, ...] | None:
        """The timesteps the caller gave, as integers (None: the schedule from steps and shift)."""
        return parse_timesteps(self.timesteps) if self.timesteps is not None else None

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.spec.vae.stride[0] + 1

    def record(self) -> dict[str, Any]:
        """Every render parameter's resolved value, by name (the manifest's `request`)."""
        return {p.name: p.read(self) for p in PARAMS}

    def with_(self, **changes) -> ResolvedRequest:
        return replace(self, **changes)
