"""Audio features: Whisper-large-v3 hidden states -> HuMo's per-latent-frame windows.

1. 16 kHz mono samples -> log-mel in 30 s chunks (WhisperFeatureExtractor).
2. The encoder's 33 hidden states per 50 Hz step, kept to the audio's real length.
3. Five features per step (means of layers 0-7, 8-15, 16-23, 24-31, and layer 32),
   linearly resampled 50 Hz -> 25 fps: [frames, 5, 1280].
4. One window of 8 video frames per latent frame (`windows`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .checkpoints import load_prefixed
from .errors import CheckpointError

SAMPLE_RATE = 16_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s window
LAYER_GROUPS = ((0, 8), (8, 16), (16, 24), (24, 32), (32, 33))


def windows(features: torch.Tensor, frames: int, shift: int = 2) -> torch.Tensor:
    """Per-frame features [T, 5, A] -> one window per latent frame [1+(frames-1)/4, 8, 5, A].

    Latent frame 0 covers video frame 0: video frames -2..2, left-padded with 3 zero
    frames. Latent frame i >= 1 covers video frames 4i-3..4i: frames 4i-3-shift ..
    4i+shift. Frames outside the audio are zeros.
    """
    total, rest = features.shape[0], features.shape[1:]
    zero = features.new_zeros(rest)

    def frame(i: int) -> torch.Tensor:
        return features[i] if 0 <= i < total else zero

    out = [torch.stack([zero] * 3 + [frame(i) for i in range(-2, 3)])]
    for latent in range(1, 1 + (frames - 1) // 4):
        first = 1 + 4 * (latent - 1) - shift
        out.append(torch.stack([frame(i) for i in range(first, first + 4 + 2 * shift)]))
    return torch.stack(out)


def merge_layers(hidden: torch.Tensor, frames: int) -> torch.Tensor:
    """Hidden states [T50, 33, A] at 50 Hz -> [frames, 5, A] at 25 fps."""
    groups = [hidden[:, a:b].mean(dim=1) for a, b in LAYER_GROUPS]  # 5 x [T50, A]
    merged = torch.stack(groups, dim=1)  # [T50, 5, A]
    series = merged.flatten(1).T[None]  # [1, 5*A, T50]
    resampled = F.interpolate(series, size=frames, mode="linear", align_corners=True)
    return resampled[0].T.unflatten(1, (len(LAYER_GROUPS), -1))


class AudioEncoder:
    """Whisper's encoder only: the decoder's weights are never loaded."""

    def __init__(self, encoder: WhisperEncoder, extractor: WhisperFeatureExtractor):
        if encoder.config.encoder_layers != 32:
            raise CheckpointError(
                f"HuMo needs a 32-layer Whisper encoder (33 hidden states); this one has "
                f"{encoder.config.encoder_layers}"
            )
        self.encoder = encoder.eval().requires_grad_(False)
        self.extractor = extractor

    @classmethod
    def from_folder(cls, folder: str | Path) -> AudioEncoder:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: not a Whisper folder (no config.json)")
        config = WhisperConfig.from_pretrained(folder, local_files_only=True)
        extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        with torch.device("meta"):
            encoder = WhisperEncoder(config)
        # Hub folders save the whole seq2seq model: the encoder's keys sit under `model.encoder.`
        state = load_prefixed(folder, ("model.encoder.", "encoder."), set(encoder.state_dict()))
        encoder.load_state_dict(state, strict=True, assign=True)
        encoder.embed_positions.weight.requires_grad_(False)
        return cls(encoder, extractor)

    @property
    def device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @torch.no_grad()
    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """16 kHz mono samples [N] -> per-video-frame features [N // 640, 5, A]."""
        frames = samples.numel() // SAMPLES_PER_FRAME
        if frames == 0:
            return torch.zeros(0, len(LAYER_GROUPS), self.encoder.config.d_model)
        hidden = []
        for start in range(0, samples.numel(), CHUNK_SAMPLES):
            chunk = samples[start : start + CHUNK_SAMPLES].numpy()
            mel = self.extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            dtype = self.encoder.conv1.weight.dtype
            out = self.encoder(mel.to(self.device, dtype), output_hidden_states=True)
            hidden.append(torch.stack(out.hidden_states, dim=2)[0].float())  # [1500, 33, A]
        states = torch.cat(hidden)[: frames * 2]  # 50 Hz steps covering the real audio
        return merge_layers(states.cpu(), frames)
