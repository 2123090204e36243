"""The registry of model specs: every fact that differs between HuMo checkpoints.

A spec names the architecture (DiT, text encoder, audio encoder, VAE), how the reference
image conditions the DiT, the default guidance scales and size, and where the weights live
inside a weights folder laid out like the official release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError
from .guidance import GuidanceDefaults, passes_for


@dataclass(frozen=True)
class DiTConfig:
    dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int
    in_dim: int  #: channels into the patch embedding (noise, plus mask and latent for 17B)
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    audio_dim: int = 1536  #: width of the audio tokens (audio_proj output)
    audio_channels: int = 1280  #: Whisper hidden size
    audio_window: int = 8  #: video frames of features per latent frame
    audio_blocks: int = 5  #: features per video frame (4 layer means + last layer)
    audio_tokens: int = 16  #: audio tokens per latent frame
    audio_hidden: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class TextConfig:
    """umT5-XXL encoder, in transformers' UMT5Config terms."""

    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 VAE, in diffusers' AutoencoderKLWan terms."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    stride: tuple[int, int, int] = (4, 8, 8)  #: frames, height, width per latent cell


@dataclass(frozen=True)
class WhisperConfig:
    """Only used to build the tiny audio encoder; real ones read their folder's config.json."""

    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    num_mel_bins: int = 128


@dataclass(frozen=True)
class WeightFiles:
    """Paths inside a weights folder laid out like the official release."""

    dit: str  #: `ema.pth` or a `*.safetensors.index.json`
    vae: str = "Wan2.1-T2V-1.3B/Wan2.1_VAE.pth"
    text: str = "Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth"
    tokenizer: str = "Wan2.1-T2V-1.3B/google/umt5-xxl"
    whisper: str = "whisper-large-v3"
    #: precomputed VAE latents of an all-zero video (17B); recomputed when absent or too small
    zero_latents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """The most one take may ask of a checkpoint: what bounds a worker's memory and time."""

    frames: int  #: video frames, windows of a long take together
    side: int  #: pixels, width or height
    #: DiT tokens of one window, (latent frames + the reference frame) x latent cells per
    #: frame: what a step's time and activation memory grow with
    tokens: int
    #: width x height x frames: the decoded clip, held once as uint8 RGB (3 bytes a pixel)
    pixels: int


#: 60 s at 25 fps: the longest take, in windows
MAX_FRAMES = 1501
#: the real checkpoints: windows of up to 161 frames' tokens at 720p either way up (the largest
#: zero latent the 17B ships is 720p x 161 frames), no side past 720p's long one, and a minute
#: at 720p (4.1 GB of frames)
REAL_LIMITS = Limits(frames=MAX_FRAMES, side=1280, tokens=42 * 45 * 80, pixels=1280 * 720 * MAX_FRAMES)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dit: DiTConfig
    #: "overwrite": the clean reference latent replaces the last latent frame before every
    #: pass (1.7B). "concat": mask + zero-video latent + reference latent are concatenated
    #: on channels (17B).
    image_conditioning: str
    guidance: GuidanceDefaults
    files: WeightFiles
    width: int
    height: int
    frames: int = 97
    #: the native clip length the DiT was trained on (4k+1 frames): a longer take renders as
    #: overlapping windows of it (models/windows.py)
    window_frames: int = 97
    steps: int = 50
    shift: float = 5.0
    fps: int = 25
    limits: Limits = REAL_LIMITS
    text: TextConfig = field(default_factory=TextConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    #: The 1.7B ema.pth holds a few training-only tensors beside the model's. We accept
    #: extras only under top-level names the inference model does not define (so a stray
    #: key inside `blocks.*` is still an error) and log their names.
    extra_top_level_ok: bool = False
    #: Wan's default negative prompt (the one the reference uses when none is given)
    negative_prompt: str = (
        "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
        "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
        "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
    )

    def tokens(self, frames: int, height: int, width: int) -> int:
        """DiT tokens of one clip: its latent frames plus the reference frame, times the cells."""
        t, h, w = self.vae.stride
        _, ph, pw = self.dit.patch_size
        return ((frames - 1) // t + 2) * (height // (h * ph)) * (width // (w * pw))

    def window_tokens(self, frames: int, height: int, width: int) -> int:
        """DiT tokens of a take's largest window (its one clip when it fits a window)."""
        return self.tokens(min(frames, self.window_frames), height, width)

    @property
    def window_latents(self) -> int:
        return (self.window_frames - 1) // self.vae.stride[0] + 1

    @property
    def passes_per_step(self) -> dict[str, int]:
        return {mode: len(passes_for(self, mode, 999)) for mode in MODES}


MODES = ("T", "TI", "TA", "TIA")

HUMO_1_7B = ModelSpec(
    name="humo-1.7b",
    dit=DiTConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_dim=16),
    image_conditioning="overwrite",
    guidance=GuidanceDefaults(text=7.0, audio=7.5, image=4.0),
    files=WeightFiles(dit="HuMo/HuMo-1.7B/ema.pth"),
    width=832,
    height=480,
    extra_top_level_ok=True,
)

HUMO_17B = ModelSpec(
    name="humo-17b",
    dit=DiTConfig(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_dim=36),
    image_conditioning="concat",
    guidance=GuidanceDefaults(text=5.0, audio=5.5, switch_timestep=980, late_text_drop=2.0),
    files=WeightFiles(
        dit="HuMo/HuMo-17B/humo.safetensors.index.json",
        zero_latents=("HuMo/zero_vae_720p_161frame.pt", "HuMo/zero_vae_129frame.pt"),
    ),
    width=1280,
    height=720,
)

#: The same architecture with small dims: CPU tests and the farm's embedded default.
TINY = ModelSpec(
    name="tiny",
    dit=DiTConfig(
        dim=64,
        ffn_dim=128,
        num_layers=2,
        num_heads=2,
        in_dim=16,
        text_dim=32,
        text_len=32,
        freq_dim=32,
        audio_dim=64,
        audio_channels=32,
        audio_hidden=32,
    ),
    image_conditioning="overwrite",
    guidance=GuidanceDefaults(text=7.0, audio=7.5, image=4.0),
    files=WeightFiles(dit="HuMo/HuMo-tiny/ema.pth"),
    width=64,
    height=48,
    frames=17,
    steps=4,
    # CPU-sized: windows of 161 frames' tokens at 256x192, a minute at that size
    limits=Limits(frames=MAX_FRAMES, side=256, tokens=42 * 16 * 12, pixels=256 * 192 * MAX_FRAMES),
    text=TextConfig(vocab_size=384, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2),
    vae=VAEConfig(base_dim=8),
    whisper=WhisperConfig(d_model=32, encoder_layers=32, encoder_attention_heads=2, encoder_ffn_dim=64),
    extra_top_level_ok=True,
)

#: The 17B's channel-concat conditioning at tiny size, so CPU tests cover both paths.
TINY_CONCAT = ModelSpec(
    name="tiny-concat",
    dit=TINY.dit.__class__(**{**TINY.dit.__dict__, "in_dim": 36}),
    image_conditioning="concat",
    guidance=GuidanceDefaults(text=5.0, audio=5.5, switch_timestep=980, late_text_drop=2.0),
    files=WeightFiles(dit="HuMo/HuMo-tiny-concat/humo.safetensors.index.json"),
    width=TINY.width,
    height=TINY.height,
    frames=TINY.frames,
    steps=TINY.steps,
    limits=TINY.limits,
    text=TINY.text,
    vae=TINY.vae,
    whisper=TINY.whisper,
)

SPECS: dict[str, ModelSpec] = {s.name: s for s in (HUMO_1_7B, HUMO_17B, TINY, TINY_CONCAT)}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name.lower()]
    except KeyError:
        raise InputError("checkpoint", f"unknown checkpoint {name!r}; choose one of {', '.join(SPECS)}") from None
