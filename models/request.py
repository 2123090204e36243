"""A render request and its validation: every bad field is an InputError that names it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import InputError
from .guidance import Scales, default_scales
from .media import probe_audio, probe_image
from .specs import MODES, ModelSpec, get_spec


@dataclass(frozen=True)
class RenderRequest:
    prompt: str
    checkpoint: str = "tiny"
    mode: str = "TIA"
    image: str | None = None  #: path to the reference image (modes with I)
    audio: str | None = None  #: path to the audio track (modes with A)
    negative_prompt: str | None = None  #: None: the checkpoint's default
    seed: int = 0
    width: int | None = None  #: None: the checkpoint's default
    height: int | None = None
    frames: int | None = None  #: 4k+1
    steps: int | None = None
    shift: float | None = None
    scale_text: float | None = None  #: None: the checkpoint's default
    scale_audio: float | None = None
    scale_image: float | None = None

    def resolved(self, probe_files: bool = True) -> ResolvedRequest:
        """Apply the checkpoint's defaults and check every field.

        probe_files: open the image and audio to check they decode (off where the caller
        checks its inputs another way, e.g. the farm's content-addressed uploads).
        """
        spec = get_spec(self.checkpoint)
        mode = (self.mode or "").upper()
        if mode not in MODES:
            raise InputError("mode", f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InputError("prompt", "the prompt is empty; describe the shot in words")
        width = self.width if self.width is not None else spec.width
        height = self.height if self.height is not None else spec.height
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value <= 0 or value % 16:
                raise InputError(name, f"{value!r} is not a positive multiple of 16 (e.g. {_nearest16(value)})")
        frames = self.frames if self.frames is not None else spec.frames
        if not isinstance(frames, int) or frames < 1 or (frames - 1) % 4:
            raise InputError("frames", f"{frames!r} is not of the form 4k+1 (e.g. {_nearest4k1(frames)})")
        steps = self.steps if self.steps is not None else spec.steps
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise InputError("steps", f"{steps!r} must be an integer from 1 to 1000")
        shift = self.shift if self.shift is not None else spec.shift
        if not isinstance(shift, (int, float)) or shift <= 0:
            raise InputError("shift", f"{shift!r} must be a positive number (the default is {spec.shift})")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError("seed", f"{self.seed!r} must be an integer from 0 to 2**63-1")
        if "I" in mode and not self.image:
            raise InputError(
                "image", f"mode {mode} needs a reference image; give one or use mode {mode.replace('I', '')}"
            )
        if "A" in mode and not self.audio:
            raise InputError("audio", f"mode {mode} needs an audio track; give one or use mode {mode.replace('A', '')}")
        if probe_files and "I" in mode:
            probe_image(self.image)  # unreadable or unsupported: fail before any model loads
        if probe_files and "A" in mode:
            probe_audio(self.audio)
        defaults = default_scales(spec)
        scales = Scales(
            text=_scale("scale_text", self.scale_text, defaults.text),
            audio=_scale("scale_audio", self.scale_audio, defaults.audio),
            image=_scale("scale_image", self.scale_image, defaults.image),
        )
        negative = self.negative_prompt if self.negative_prompt else spec.negative_prompt
        return ResolvedRequest(
            spec=spec,
            prompt=self.prompt,
            negative_prompt=negative,
            mode=mode,
            seed=self.seed,
            image=self.image if "I" in mode else None,
            audio=self.audio if "A" in mode else None,
            width=width,
            height=height,
            frames=frames,
            steps=steps,
            shift=float(shift),
            scales=scales,
        )


@dataclass(frozen=True)
class ResolvedRequest:
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

    def with_(self, **changes) -> ResolvedRequest:
        return replace(self, **changes)


def _scale(name: str, value, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, (int, float)) or not -100 <= value <= 100:
        raise InputError(name, f"{value!r} must be a number from -100 to 100 (the default is {default})")
    return float(value)


def _nearest16(value) -> int:
    return max(16, round(value / 16) * 16) if isinstance(value, (int, float)) and value > 0 else 480


def _nearest4k1(value) -> int:
    return max(1, round((value - 1) / 4) * 4 + 1) if isinstance(value, (int, float)) and value > 0 else 97
