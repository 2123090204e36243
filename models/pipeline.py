"""The HuMo pipeline: encoders, DiT, sampler and VAE, loaded once, rendering many takes.

render(request, on_step):
1. Encode the inputs once per take: prompt and negative prompt (umT5), audio windows
   (Whisper), reference latent (VAE).
2. Denoise: for each of `steps` timesteps (or the request's given timesteps), run the
   guidance chain's DiT passes (one with guidance off), combine them, step the sampler
   (UniPC or Euler); call on_step(i, n) after every step.
3. Drop the reference frame, decode with the VAE, fit the audio to the clip.

A take longer than the checkpoint's native clip renders as overlapping windows over one
latent sequence (models/windows.py plans them, models/long_take.py joins them): step 2 runs
once per window, each window's first frames held to the previous window's latents and its
audio cut from the whole track's at its frames; step 3 decodes the whole sequence once,
streamed through the causal VAE. A take of one window renders exactly as before.

The result records the engine settings the render used, read from the live scheduler and
DiT (`RenderResult.engine`), so a manifest states what ran, not what was meant to.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import attention as kernels
from . import long_take, lora, media
from . import windows as windowing
from .audio import AudioEncoder, windows
from .checkpoints import files_sha256, load_into, open_checkpoint
from .dit import HumoDiT
from .errors import CheckpointError, InputError
from .fp8 import FP8Linear, enable_fp8, supported
from .guidance import Condition, combine, passes_for
from .lora import Lora, Patcher, PatchRecord
from .preview import PreviewMap
from .probe import file_sha256, probe_audio
from .request import MAX_LORAS, LoraUse, RenderRequest, ResolvedRequest
from .sampler import Scheduler, describe, make_scheduler, model_timesteps
from .specs import ModelSpec, get_spec
from .text import TextEncoder, build_text_encoder
from .text import official_key_map as text_key_map
from .vae import VideoVAE, build_vae
from .vae import official_key_map as vae_key_map

log = logging.getLogger(__name__)

OnStep = Callable[[int, int], None]
#: on_preview(i, n, make) after step i of n: make() is the JPEG of the current prediction
#: (models/preview.py), computed only when called, so the caller decides how often it costs
OnPreview = Callable[[int, int, Callable[[], bytes]], None]
#: on_window(i, n, latents) after window i (from 0) of n finished: its final latents [16, length, h, w],
#: what a resumed take is given back (`resume`) to start at window i + 1
OnWindow = Callable[[int, int, torch.Tensor], None]


@dataclass
class Inputs:
    """Everything the denoising loop needs besides the latents, on the DiT's device."""

    text: torch.Tensor  #: [1, text_len, text_dim]
    negative: torch.Tensor  #: [1, text_len, text_dim]
    audio: torch.Tensor  #: [1, F+1, 8, 5, A] windows (zeros where there is no audio)
    reference: torch.Tensor  #: [16, 1, h, w] clean reference latent (zeros without an image)
    samples: torch.Tensor | None  #: 16 kHz mono audio, for muxing: the clip's span at most
    zero_latents: torch.Tensor | None = None  #: [16, F+1, h, w] VAE of a zero video (concat)
    audio_seconds: float = 0.0  #: the audio file's whole length


@dataclass
class RenderResult:
    request: ResolvedRequest
    #: [3, frames, height, width] in [-1, 1], on the CPU; None for a take of several windows,
    #: decoded straight to uint8 (`decoded`): a minute in float32 would be four times its frames
    video: torch.Tensor | None
    latents: torch.Tensor  #: [16, F, h, w] final latents, reference frame dropped
    audio: torch.Tensor | None  #: mono samples fitted to the clip's length
    audio_fit: media.AudioFit
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per stage
    #: the settings the render ran with, JSON-ready: {"sampler", "passes", "dit"} (Pipeline.engine_settings)
    engine: dict = field(default_factory=dict)
    decoded: np.ndarray | None = None  #: a windowed take's frames [T, H, W, 3] uint8, as streamed

    @cached_property
    def frames(self) -> np.ndarray:
        """The clip as uint8 frames [T, H, W, 3], converted once for the hash and the MP4."""
        if self.decoded is not None:
            return self.decoded
        if self.video is None:
            raise ValueError("a RenderResult holds its video or its decoded frames")
        return media.to_uint8_frames(self.video)

    @property
    def frames_sha256(self) -> str:
        """sha256 of the decoded uint8 frames: the render's identity, before lossy encoding."""
        return hashlib.sha256(self.frames.tobytes()).hexdigest()

    def write(self, mp4: str | Path, thumbnail: str | Path | None = None) -> None:
        frames = self.frames
        media.write_mp4(mp4, frames, self.request.spec.fps, self.audio, media.AUDIO_RATE)
        if thumbnail is not None:
            media.write_thumbnail(thumbnail, frames)


class Pipeline:
    def __init__(
        self,
        spec: ModelSpec,
        dit: HumoDiT,
        vae: VideoVAE,
        text: TextEncoder,
        audio: AudioEncoder,
        *,
        device: torch.device,
        zero_latent_files: Sequence[Path] = (),
    ):
        self.spec, self.dit, self.vae, self.text, self.audio = spec, dit.eval(), vae, text, audio
        self.device = torch.device(device)
        self.zero_latent_files = list(zero_latent_files)
        self._zero_cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self.dit_files: list[Path] = []  #: the DiT's weight files, for the checkpoint digest
        self._digest: str | None = None
        #: run all guidance passes of a step as one batch (more memory, fewer launches)
        self.batch_passes = False
        self.cache_size = 16  #: encodings kept (prompts, audio tracks, reference images)
        self._encodings: dict[tuple, object] = {}
        self._pinned: set[torch.nn.Module] = set()  #: encoders whose CPU weights are pinned
        self.patcher = Patcher(self.dit)  #: the LoRAs on the DiT now; the base kept to restore
        self._loras: dict[tuple, Lora] = {}  #: LoRA files read, by (path, size, mtime)

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        checkpoint: str,
        weights: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        compile: bool | None = None,
        fp8: bool = False,
        attention: str = "auto",
    ) -> Pipeline:
        """Build every model on the meta device and stream the official files into it.

        compile: torch.compile the DiT blocks (default: on CUDA; same function, ~20% faster).
        fp8: run the DiT's big linears in FP8 (Hopper; opt-in, see models/fp8.py).
        attention: the self-attention kernel, "auto" (the fastest exact one installed), one of
        models.attention.KERNELS or the opt-in FP8 one (OPT_IN); chosen here, once, for the process.
        """
        spec = get_spec(checkpoint)
        weights = Path(weights)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if fp8 and not supported(device):  # before any weights load
            raise CheckpointError("fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper)")
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        # before any weights load: a bad choice fails fast, and a kernel built at first use is built now
        kernels.select(attention, device, dtype, spec.dit.head_dim)
        files = spec.files
        keep_on = device if device.type == "cpu" else torch.device("cpu")  # encoders wait on the CPU

        with torch.device("meta"):
            dit = HumoDiT(spec.dit)
        top_level = {name for name, _ in dit.named_children()}
        dit_source = open_checkpoint(weights / files.dit)
        load_into(
            dit,
            dit_source,
            device=device,
            dtype=dtype,
            extra_ok=lambda k: spec.extra_top_level_ok and k.split(".")[0] not in top_level,
        )

        with torch.device("meta"):
            vae_model = build_vae(spec.vae)
        load_into(
            vae_model,
            open_checkpoint(weights / files.vae),
            rename=vae_key_map(vae_model, spec.vae),
            device=device,
            dtype=torch.float32 if device.type == "cpu" else torch.bfloat16,
        )

        with torch.device("meta"):
            t5 = build_text_encoder(spec.text)
        load_into(
            t5, open_checkpoint(weights / files.text), rename=text_key_map(spec.text), device=keep_on, dtype=dtype
        )
        tokenizer_dir = weights / files.tokenizer
        if not tokenizer_dir.is_dir():
            raise CheckpointError(f"{tokenizer_dir}: tokenizer folder not found")
        text = TextEncoder(t5, TextEncoder.tokenizer_from(str(tokenizer_dir)), spec.dit.text_len)

        audio = AudioEncoder.from_folder(weights / files.whisper)
        audio.encoder.to(keep_on, torch.float32)  # the reference runs Whisper in float32
        if fp8:
            enable_fp8(dit)
        if compile if compile is not None else device.type == "cuda":
            dit.compile_blocks()
        zero_files = [weights / f for f in files.zero_latents if (weights / f).is_file()]
        pipe = cls(spec, dit, VideoVAE(vae_model), text, audio, device=device, zero_latent_files=zero_files)
        pipe.dit_files = dit_source.files
        return pipe

    @cached_property
    def preview_map(self) -> PreviewMap:
        """The latent-to-RGB map of live previews, fitted to this pipeline's VAE on first use."""
        return PreviewMap.fit(self.vae, self.device)

    @property
    def checkpoint_digest(self) -> str | None:
        """sha256 over the DiT's weight files (the index and every shard), computed once."""
        if self._digest is None and self.dit_files:
            self._digest = files_sha256(self.dit_files)
        return self._digest

    # -- step 1: inputs ---------------------------------------------------------------------
    @contextmanager
    def _on_device(self, module: torch.nn.Module):
        """Lend an encoder to the DiT's device for the call; it lives on the CPU otherwise.

        On CUDA its CPU weights are pinned once, so the lend is one fast upload and the
        return costs nothing (the GPU copies are dropped, the CPU ones were never changed).
        """
        if self.device.type == "cpu" or next(module.parameters()).device == self.device:
            yield
            return
        params = list(module.parameters())
        homes = [p.data for p in params]
        if module not in self._pinned:
            homes = [h.pin_memory() for h in homes]
            for p, h in zip(params, homes):
                p.data = h
            self._pinned.add(module)
        for p, h in zip(params, homes):
            p.data = h.to(self.device, non_blocking=True)
        try:
            yield
        finally:
            for p, h in zip(params, homes):
                p.data = h

    def _cached(self, key: tuple, compute):
        """Encodings reused across the takes of a batch (same prompt, audio or image)."""
        if key not in self._encodings:
            if len(self._encodings) >= self.cache_size:
                self._encodings.pop(next(iter(self._encodings)))
            self._encodings[key] = compute()
        self._encodings[key] = self._encodings.pop(key)  # most recently used last
        return self._encodings[key]

    def _encode_text(self, prompt: str, negative: str):
        with self._on_device(self.text.model):
            return self.text.encode([prompt, negative]).to(self.device).split(1)

    def _encode_audio(self, path: str, seconds: float):
        samples = media.load_audio(path, seconds=seconds)
        whole = samples.numel() / media.AUDIO_RATE
        if whole >= seconds:  # the file may go on past the span: its length from its header
            whole = max(whole, probe_audio(path))
        with self._on_device(self.audio.encoder):
            return samples, self.audio.features(samples), whole

    def encode_inputs(self, req: ResolvedRequest) -> Inputs:
        text, negative = self._cached(
            ("text", req.prompt, req.negative_prompt), lambda: self._encode_text(req.prompt, req.negative_prompt)
        )
        height, width = req.height // 8, req.width // 8
        samples, audio_seconds = None, 0.0
        if req.audio:
            # only the clip's span is heard: its features depend on nothing past the clip's end
            span = req.frames / req.spec.fps
            key = ("audio", file_sha256(req.audio), span)
            samples, feats, audio_seconds = self._cached(key, lambda: self._encode_audio(req.audio, span))
        else:
            feats = torch.zeros(req.frames, 5, self.spec.dit.audio_channels)
        wins = windows(feats, req.frames)  # [F, 8, 5, A]
        wins = torch.cat([wins, wins.new_zeros(1, *wins.shape[1:])])  # the reference frame hears nothing
        reference = torch.zeros(self.spec.vae.z_dim, 1, height, width, device=self.device)
        if image := req.image:

            def encode_image():
                pixels = media.load_image(image, req.width, req.height)
                return self.vae.encode(pixels[None, :, None])[0].to(self.device)

            reference = self._cached(("image", file_sha256(image), req.width, req.height), encode_image)
        zero = None
        if self.spec.image_conditioning == "concat":  # enough for the longest window
            zero = self.zero_latents(req.height, req.width, max(w.length for w in req.windows) + 1)
        return Inputs(
            text=text,
            negative=negative,
            audio=wins[None].to(self.device),
            reference=reference,
            samples=samples,
            zero_latents=zero,
            audio_seconds=audio_seconds,
        )

    def zero_latents(self, height: int, width: int, latent_frames: int) -> torch.Tensor:
        """VAE latents of an all-zero video: from the shipped files when they fit, else computed."""
        key = (height, width, latent_frames)
        if key not in self._zero_cache:
            found = None
            for path in self.zero_latent_files:
                z = torch.load(path, map_location="cpu", weights_only=True)
                if z.ndim == 5:
                    z = z[0]
                if z.shape[2:] == (height // 8, width // 8) and z.shape[1] >= latent_frames:
                    found = z[:, :latent_frames].float()
                    break
            if found is None:  # causal VAE: the first n latents of any zero video are the same
                zeros = torch.zeros(1, 3, 4 * (latent_frames - 1) + 1, height, width)
                found = self.vae.encode(zeros)[0]
            self._zero_cache[key] = found.to(self.device)
        return self._zero_cache[key]

    # -- step 2: denoise --------------------------------------------------------------------
    def _pass_input(self, latents: torch.Tensor, cond: Condition, inputs: Inputs) -> torch.Tensor:
        """The DiT's input for one pass: [C_in, F+1, h, w]."""
        if self.spec.image_conditioning == "overwrite":
            ref = inputs.reference if cond.image else torch.zeros_like(inputs.reference)
            return torch.cat([latents[:, :-1], ref], dim=1)
        zero = inputs.zero_latents
        if zero is None:
            raise ValueError("channel-concat conditioning needs Inputs.zero_latents (see encode_inputs)")
        mask = torch.zeros(4, *latents.shape[1:], device=latents.device)
        mask[:, -1] = 1
        cond_latent = torch.cat([zero[:, :-1], inputs.reference], dim=1) if cond.image else zero
        return torch.cat([latents, mask, cond_latent], dim=0)

    def _predict(
        self, latents: torch.Tensor, t: torch.Tensor, conds: list[Condition], inputs: Inputs
    ) -> list[torch.Tensor]:
        """One DiT prediction per condition: one batched call, or one call each."""

        def batch(conds):
            x = torch.stack([self._pass_input(latents, c, inputs) for c in conds])
            text = torch.cat([inputs.text if c.text else inputs.negative for c in conds])
            audio = torch.cat([inputs.audio if c.audio else torch.zeros_like(inputs.audio) for c in conds])
            return self.dit(x, t.expand(len(conds)), text, audio)

        if self.batch_passes:
            return list(batch(conds).unbind(0))
        return [batch([c])[0] for c in conds]

    @torch.no_grad()
    def denoise(
        self,
        req: ResolvedRequest,
        inputs: Inputs,
        on_step: OnStep | None = None,
        engine: dict | None = None,
        on_preview: OnPreview | None = None,
    ) -> torch.Tensor:
        """Returns the final latents [16, F+1, h, w] (reference frame still last).

        engine: when given, filled with the settings this loop ran with (see `engine_settings`).
        on_preview: called after every step with a thunk for the preview of its prediction.
        """
        latents, scheduler, passes = self._denoise(req, inputs, req.latent_frames, req.seed, on_step, on_preview)
        if engine is not None:
            engine.update(self.engine_settings(scheduler, passes, req.guidance))
        return latents

    def _denoise(
        self,
        req: ResolvedRequest,
        inputs: Inputs,
        frames: int,
        seed: int,
        on_step: OnStep | None,
        on_preview: OnPreview | None,
        previous: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Scheduler, list[int]]:
        """One clip's (or window's) denoising loop over `frames` latent frames + the reference
        frame: its final latents, the scheduler that ran and the passes each step made.

        previous: [16, k, h, w], the previous window's last k final latents: the first k
        frames are held to them, noised to each step's sigma, and end exactly on them.
        """
        shape = (self.spec.vae.z_dim, frames + 1, req.height // 8, req.width // 8)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        latents = torch.randn(shape, generator=generator, device=self.device, dtype=torch.float32)
        noise = None if previous is None else latents[:, : previous.shape[1]].clone()  # the held frames' eps
        scheduler = make_scheduler(req.steps, req.shift, req.sampler, req.given_timesteps)
        timesteps = model_timesteps(scheduler)
        passes: list[int] = []  #: DiT predictions made at each step
        for i, t in enumerate(timesteps):
            if previous is not None and noise is not None:
                latents = long_take.hold(latents, previous, noise, float(scheduler.sigmas[i]))
            chain = passes_for(self.spec, req.mode, float(t), req.scales, req.guidance)
            preds = self._predict(latents, t.to(self.device)[None], [c for c, _ in chain], inputs)
            passes.append(len(preds))
            pred = combine(preds, [s for _, s in chain])
            x_t, sigma = latents, scheduler.sigmas[i]
            latents = scheduler.step(pred[None], scheduler.timesteps[i], latents[None], return_dict=False)[0][0]
            if on_step is not None:
                on_step(i + 1, len(timesteps))
            if on_preview is not None:  # x0 = x_t - sigma * v, without the reference frame
                x0 = lambda x=x_t, s=sigma, v=pred: self.preview_map.jpeg((x - s * v)[:, :-1])
                on_preview(i + 1, len(timesteps), x0)
        if previous is not None and noise is not None:  # sigma 0: exactly the previous window's
            latents = long_take.hold(latents, previous, noise, 0.0)
        return latents, scheduler, passes

    @torch.no_grad()
    def denoise_windows(
        self,
        req: ResolvedRequest,
        inputs: Inputs,
        on_step: OnStep | None = None,
        engine: dict | None = None,
        on_preview: OnPreview | None = None,
        resume: Sequence[torch.Tensor] = (),
        on_window: OnWindow | None = None,
    ) -> torch.Tensor:
        """A take as its windows (`req.windows`): the global final latents [16, F, h, w].

        on_step(i, n) counts the steps of every window (n = windows x steps), so cancelling
        works between any two. resume: the final latents of the windows already finished (as
        on_window gave them), in order: the take starts at the next window and ends on the
        same latents as an uninterrupted render on the same device.
        """
        windows = req.windows
        steps, h, w = req.steps, req.height // 8, req.width // 8
        if len(resume) > len(windows):
            raise ValueError(f"{len(resume)} finished windows given; the take has {len(windows)}")
        done: list[torch.Tensor] = []
        for win, lat in zip(windows, resume):
            if tuple(lat.shape) != (self.spec.vae.z_dim, win.length, h, w):
                raise ValueError(f"window {win.index}'s latents are {tuple(lat.shape)}, not {win.length} frames")
            done.append(lat.to(self.device, torch.float32))
        whole = inputs.audio[0, :-1]  # [F, 8, 5, A]: the whole track's windows
        target = long_take.channel_stats(done[0]) if done and req.colour_hold == "on" else None
        ran: tuple | None = None
        total = len(windows) * steps
        for win in windows[len(done) :]:
            zero = inputs.zero_latents
            own = replace(
                inputs,
                audio=long_take.window_audio(whole, win)[None],
                zero_latents=None if zero is None else zero[:, : win.length + 1],
            )
            offset = win.index * steps
            step = None if on_step is None else lambda i, n, o=offset: on_step(o + i, total)
            look = None if on_preview is None else lambda i, n, make, o=offset: on_preview(o + i, total, make)
            previous = done[-1][:, done[-1].shape[1] - win.overlap :] if win.index else None
            seed = windowing.seed(req.seed, win.index)
            latents, scheduler, passes = self._denoise(req, own, win.length, seed, step, look, previous)
            latents = latents[:, :-1]  # the reference frame dropped
            if req.colour_hold == "on":
                if target is None:
                    target = long_take.channel_stats(latents)
                else:
                    latents = long_take.colour_hold(latents, win.overlap, target)
            done.append(latents)
            ran = (scheduler, passes)
            if on_window is not None:
                on_window(win.index, len(windows), latents)
        if engine is not None:
            scheduler, passes = ran or self._planned(req)
            engine.update(self.engine_settings(scheduler, passes, req.guidance))
            engine["windows"] = {
                **windowing.describe(windows, self.spec.vae.stride[0]),
                "seeds": [windowing.seed(req.seed, win.index) for win in windows],
                "colour_hold": req.colour_hold,
                "resumed_at": len(resume),
            }
        return long_take.join(windows, done)

    def _planned(self, req: ResolvedRequest) -> tuple:
        """The scheduler and passes a window runs with, for the record of a take resumed past its last window."""
        scheduler = make_scheduler(req.steps, req.shift, req.sampler, req.given_timesteps)
        timesteps = model_timesteps(scheduler)
        return scheduler, [len(passes_for(self.spec, req.mode, float(t), req.scales, req.guidance)) for t in timesteps]

    def engine_settings(self, scheduler, passes: list[int], guidance: str = "on") -> dict:
        """What a denoising loop ran with, read from the live scheduler and DiT (JSON types).

        sampler: its name, order and shift, and the integer timesteps the DiT saw (`describe`);
        passes: the DiT predictions made at each step; "each" is their count when every step made
        the same number (None otherwise); "guidance" the request's choice ("off": one pass per
        step, the guidance scales unused).
        """
        return {
            "sampler": {**describe(scheduler), "steps": len(passes)},
            "passes": {
                "guidance": guidance,
                "per_step": passes,
                "each": passes[0] if len(set(passes)) == 1 else None,
                "batched": self.batch_passes,
            },
            "dit": {
                "dtype": str(self.dit.dtype).removeprefix("torch."),
                "device": self.dit.patch_embedding.weight.device.type,
                "compiled": self.dit.blocks_compiled,
                "fp8": any(isinstance(m, FP8Linear) for m in self.dit.modules()),
                "attention": kernels.current(),
            },
        }

    # -- the whole take ---------------------------------------------------------------------
    @torch.no_grad()
    def use_loras(self, uses: Sequence[LoraUse]) -> PatchRecord:
        """Put exactly this LoRA stack on the DiT (none: the base, bit for bit); a stack it
        already holds costs nothing. Files read are kept for the next takes of a batch."""
        stack = []
        for use in uses:
            stat = Path(use.path).stat()
            key = (use.path, stat.st_size, stat.st_mtime_ns)
            if key not in self._loras:
                if len(self._loras) >= MAX_LORAS:  # room for one whole stack: a batch's stays read
                    self._loras.pop(next(iter(self._loras)))
                self._loras[key] = lora.load(use.path, self.spec)
            stack.append((self._loras[key], use.strength))
        return self.patcher.use(stack)

    def denoise_take(
        self,
        req: ResolvedRequest,
        on_step: OnStep | None = None,
        engine: dict | None = None,
        lap: Callable[[str], None] = lambda stage: None,
        on_preview: OnPreview | None = None,
        resume: Sequence[torch.Tensor] = (),
        on_window: OnWindow | None = None,
    ) -> tuple[torch.Tensor, Inputs]:
        """A take up to its final latents [16, F, h, w] (the reference frame dropped), as every
        rank of a group runs it: its LoRA stack on the DiT, its inputs encoded, its steps, in
        windows when it has several. `lap(stage)` marks each stage's end."""
        record = self.use_loras(req.loras).describe()
        if engine is not None:
            engine["loras"] = record
        lap("loras")
        inputs = self.encode_inputs(req)
        lap("encode")
        if len(req.windows) == 1 and not resume:
            latents = self.denoise(req, inputs, on_step, engine, on_preview)[:, :-1]
            if on_window is not None:
                on_window(0, 1, latents)
        else:
            latents = self.denoise_windows(req, inputs, on_step, engine, on_preview, resume, on_window)
        lap("denoise")
        return latents, inputs

    def decode_frames(self, latents: torch.Tensor) -> np.ndarray:
        """A take's latents [16, F, h, w] -> uint8 frames [1+4(F-1), 8h, 8w, 3], streamed through
        the VAE a latent frame at a time: only the frames themselves grow with the length."""
        stride = self.spec.vae.stride
        frames = np.empty(
            (1 + stride[0] * (latents.shape[1] - 1), latents.shape[2] * stride[1], latents.shape[3] * stride[2], 3),
            np.uint8,
        )
        at = 0
        for chunk in self.vae.stream(latents):
            part = media.to_uint8_frames(chunk)
            frames[at : at + len(part)] = part
            at += len(part)
        return frames

    def render(
        self,
        request: RenderRequest | ResolvedRequest,
        on_step: OnStep | None = None,
        on_preview: OnPreview | None = None,
        *,
        resume: Sequence[torch.Tensor] = (),
        on_window: OnWindow | None = None,
    ) -> RenderResult:
        """One take to its clip. A take of several windows reports each finished window's
        latents to on_window, and given them back as `resume` starts after them."""
        req = request.resolved() if isinstance(request, RenderRequest) else request
        if req.spec.name != self.spec.name:
            raise InputError(
                "checkpoint", f"this pipeline holds {self.spec.name}, the request asks for {req.spec.name}"
            )
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            timings[name] = now - clock
            clock = now

        engine: dict = {}
        latents, inputs = self.denoise_take(req, on_step, engine, lap, on_preview, resume, on_window)
        video, decoded = None, None
        if len(req.windows) == 1:
            video = self.vae.decode(latents[None])[0].cpu()
        else:
            decoded = self.decode_frames(latents)
        lap("decode")
        audio, fit = media.fit_audio(inputs.samples, media.AUDIO_RATE, req.frames, req.spec.fps, inputs.audio_seconds)
        return RenderResult(req, video, latents.cpu(), audio, fit, timings, engine, decoded)
