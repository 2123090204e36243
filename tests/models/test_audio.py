import torch

from models.audio import AudioEncoder, merge_layers, windows
from models.media import load_audio
from models.specs import TINY

from ..conftest import write_wav


def numbered(frames: int, channels: int = 3) -> torch.Tensor:
    """Feature i of video frame n holds n + 1 (so 0 means padding)."""
    return (torch.arange(frames, dtype=torch.float32) + 1)[:, None, None].expand(frames, 5, channels).clone()


def test_windows_match_hand_computed_ones():
    feats = numbered(17)
    w = windows(feats, frames=17)
    assert w.shape == (5, 8, 5, 3)
    got = [[int(v) for v in w[i, :, 0, 0]] for i in range(5)]
    # latent 0: 3 zero frames, then video frames -2..2 (frames -2, -1 are outside: zero)
    assert got[0] == [0, 0, 0, 0, 0, 1, 2, 3]
    # latent i >= 1: video frames 4i-5 .. 4i+2 (shift 2 around 4i-3..4i)
    assert got[1] == [0, 1, 2, 3, 4, 5, 6, 7]  # frames -1..6
    assert got[2] == [4, 5, 6, 7, 8, 9, 10, 11]  # frames 3..10
    assert got[3] == [8, 9, 10, 11, 12, 13, 14, 15]
    assert got[4] == [12, 13, 14, 15, 16, 17, 0, 0]  # frames 11..18, past the end: zero


def test_windows_of_short_audio_are_zero_padded():
    w = windows(numbered(3), frames=9)
    assert [int(v) for v in w[2, :, 0, 0]] == [0, 0, 0, 0, 0, 0, 0, 0]  # frames 3..10: none exist
    assert [int(v) for v in w[1, :, 0, 0]] == [0, 1, 2, 3, 0, 0, 0, 0]


def test_merge_layers_averages_groups_and_resamples_to_25fps():
    steps, layers = 8, 33
    hidden = torch.zeros(steps, layers, 2)
    for layer in range(layers):
        hidden[:, layer] = layer
    hidden[:, :, 1] = torch.arange(steps, dtype=torch.float32)[:, None]  # a ramp in time
    out = merge_layers(hidden, frames=4)
    assert out.shape == (4, 5, 2)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([3.5, 11.5, 19.5, 27.5, 32.0]))
    # align_corners linear resampling of 0..7 onto 4 points: 0, 7/3, 14/3, 7
    torch.testing.assert_close(out[:, 0, 1], torch.tensor([0.0, 7 / 3, 14 / 3, 7.0]))


def test_whisper_features_have_one_row_per_video_frame(weights, tmp_path):
    encoder = AudioEncoder.from_folder(weights / TINY.files.whisper)
    samples = load_audio(write_wav(tmp_path / "a.wav", seconds=1.0, rate=44_100))
    assert abs(samples.numel() - 16_000) <= 2
    feats = encoder.features(samples)
    assert feats.shape == (samples.numel() // 640, 5, TINY.whisper.d_model)
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0


def test_only_the_clips_span_of_audio_is_decoded(tmp_path):
    long = write_wav(tmp_path / "long.wav", seconds=40.0, rate=16_000)  # past one Whisper window
    whole = load_audio(long)
    start = load_audio(long, seconds=3.88)
    assert start.numel() == round(3.88 * 16_000)
    torch.testing.assert_close(start, whole[: start.numel()])  # the same samples, not resampled differently
    short = write_wav(tmp_path / "short.wav", seconds=1.0, rate=16_000)
    assert load_audio(short, seconds=3.88).numel() == load_audio(short).numel()  # shorter: all of it
