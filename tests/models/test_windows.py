"""Long takes on the tiny models: windows over one latent sequence, held at the joins, each
hearing its own audio, resumable window by window, decoded once through a streamed VAE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import InputError, RenderCanceled, RenderRequest
from models import windows as windowing
from models.media import load_audio
from models.sampler import make_scheduler
from models.specs import TINY
from models.windows import DEFAULT_OVERLAP, Window, plan

from ..conftest import write_wav
from .test_cli import run_cli
from .test_render import probe

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(width=32, height=32, steps=2)  # the windowing is what is tested here, not the picture


@pytest.fixture(autouse=True)
def one_thread():
    """The causal VAE decodes frame by frame: small ops that two busy cores only slow down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    """17 s of audio: longer than the longest take below."""
    return write_wav(tmp_path_factory.mktemp("long") / "line.wav", seconds=17.0, rate=16_000)


def take(checkpoint="tiny", mode="TIA", frames=181, *, media, track, **more) -> RenderRequest:
    return RenderRequest(
        prompt="a presenter talks to camera",
        checkpoint=checkpoint,
        mode=mode,
        image=str(media["image"]) if "I" in mode else None,
        audio=str(track) if "A" in mode else None,
        frames=frames,
        seed=7,
        **{**SMALL, **more},
    )


class DiTCalls:
    """Every DiT call's input and audio, by the take's global step (counted through on_step)."""

    def __init__(self, pipe):
        self.step, self.calls = 0, []
        self.handle = pipe.dit.register_forward_pre_hook(self.record)

    def record(self, module, args):
        x, _, _, audio = args
        self.calls.append((self.step, x[0].clone(), audio[0].clone()))

    def on_step(self, i, n):
        self.step = i


# -- the plan ---------------------------------------------------------------------------------
def test_a_take_is_planned_as_overlapping_windows_of_the_native_length():
    assert plan(25, 25, 5) == (Window(0, 0, 25, 0),)  # 97 frames: one clip, as before
    windows = plan(101, 25, 5)  # 401 frames
    assert [(w.start, w.length, w.overlap) for w in windows] == [
        (0, 25, 0),
        (20, 25, 5),
        (40, 25, 5),
        (60, 25, 5),
        (80, 21, 5),
    ]
    for latents in range(26, 400, 7):
        for k in (1, 5, 12):
            ws = plan(latents, 25, k)
            assert ws[-1].stop == latents and all(w.length <= 25 for w in ws)
            assert all(b.start == a.stop - k for a, b in zip(ws, ws[1:]))
            assert all(w.length > w.overlap for w in ws)  # every window adds frames
    # latent 0 is frame 0, latent j >= 1 frames 4j-3..4j
    assert windows[0].video_frames() == range(0, 97) and windows[1].video_frames() == range(77, 177)
    assert windows[-1].video_frames().stop == 401
    assert TINY.window_latents == 25 and DEFAULT_OVERLAP == 5


def test_window_seeds_derive_from_the_takes_seed():
    seeds = [windowing.seed(42, i) for i in range(10)]
    assert seeds[0] == 42 and len(set(seeds)) == 10 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [windowing.seed(42, i) for i in range(10)]
    assert windowing.seed(43, 1) != seeds[1]


# -- rendering --------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["tiny", "tiny-concat"])
@pytest.mark.parametrize("mode", ["T", "TI", "TA", "TIA"])
def test_3_and_5_window_takes_render_every_frame_with_the_whole_audio(
    pipelines, media, track, tmp_path, checkpoint, mode
):
    # 181 frames: 46 latents, 3 windows; 257 frames at the largest overlap: 65 latents, 5 windows
    for frames, overlap, count in ((181, DEFAULT_OVERLAP, 3), (257, 12, 5)):
        request = take(checkpoint, mode, frames, media=media, track=track, overlap=overlap)
        result = pipelines[checkpoint].render(request)
        assert len(result.request.windows) == count
        assert result.engine["windows"]["count"] == count and result.engine["windows"]["overlap"] == overlap
        assert result.latents.shape == (16, (frames - 1) // 4 + 1, 4, 4)
        out = tmp_path / f"{frames}.mp4"
        result.write(out)
        info, decoded = probe(out)
        assert info["frames"] == frames and info["size"] == (32, 32) and result.frames.shape == (frames, 32, 32, 3)
        if "A" in mode:
            assert info["audio"]["seconds"] == pytest.approx(frames / 25, abs=0.05)
            assert result.audio_fit.action == "trimmed" and result.audio.numel() == round(frames / 25 * 16_000)
        else:
            assert info["audio"] is None


@pytest.mark.parametrize("checkpoint", ["tiny", "tiny-concat"])
def test_the_overlap_is_held_to_the_previous_windows_latents(pipelines, media, track, checkpoint):
    pipe = pipelines[checkpoint]
    request = take(checkpoint, "TA", 181, media=media, track=track, steps=3)
    finished: list[torch.Tensor] = []
    calls = DiTCalls(pipe)
    try:
        result = pipe.render(request, calls.on_step, on_window=lambda i, n, lat: finished.append(lat.clone()))
    finally:
        calls.handle.remove()
    windows, k = result.request.windows, DEFAULT_OVERLAP
    sigmas = make_scheduler(3, result.request.shift).sigmas
    for w in windows[1:]:
        previous = finished[w.index - 1][:, -k:]
        shape = (16, w.length + 1, 4, 4)
        eps = torch.randn(shape, generator=torch.Generator().manual_seed(windowing.seed(7, w.index)))[:, :k]
        for step, x, _ in calls.calls:
            if step // 3 == w.index:  # every pass of this window's steps sees the held frames
                sigma = float(sigmas[step % 3])
                torch.testing.assert_close(x[:16, :k], (1 - sigma) * previous + sigma * eps, rtol=0, atol=1e-6)
        # it ends on them exactly, and the sequence holds each latent frame once
        assert torch.equal(finished[w.index][:, :k], previous)
        assert torch.equal(result.latents[:, w.start : w.start + k], previous)
    assert torch.equal(result.latents[:, :25], finished[0])
    assert not torch.equal(finished[1][:, k:], finished[0][:, -(25 - k) :])  # the windows are not copies


def test_each_window_hears_the_whole_tracks_audio_at_its_own_frames(pipelines, media, track):
    pipe = pipelines["tiny"]
    frames = 181
    request = take("tiny", "TA", frames, media=media, track=track)
    calls = DiTCalls(pipe)
    try:
        result = pipe.render(request, calls.on_step)
    finally:
        calls.handle.remove()
    features = pipe.audio.features(load_audio(track, seconds=frames / 25))  # [181, 5, A], per video frame
    zero = torch.zeros_like(features[0])

    def frame(i):
        return features[i] if 0 <= i < len(features) else zero

    def by_hand(g):  # latent 0 hears frames -2..2 after 3 zero frames; latent g, frames 4g-5..4g+2
        if g == 0:
            return torch.stack([zero] * 3 + [frame(i) for i in range(-2, 3)])
        return torch.stack([frame(i) for i in range(4 * g - 5, 4 * g + 3)])

    for w in result.request.windows:
        heard = [audio for step, _, audio in calls.calls if step // 2 == w.index and audio.abs().sum() > 0]
        assert heard, f"window {w.index} had no pass with audio"
        expected = torch.stack([by_hand(w.start + j) for j in range(w.length)] + [torch.zeros(8, 5, 32)])
        for audio in heard:
            torch.testing.assert_close(audio, expected, rtol=0, atol=1e-6)


# -- resume and cancel ----------------------------------------------------------------------
@pytest.mark.parametrize("colour_hold", ["off", "on"])
def test_a_take_stopped_in_window_3_of_5_resumes_there_with_the_same_frames(pipelines, media, track, colour_hold):
    pipe = pipelines["tiny"]
    request = take("tiny", "TIA", 257, media=media, track=track, overlap=12, colour_hold=colour_hold)
    whole = pipe.render(request)
    saved: list[torch.Tensor] = []
    seen: list[tuple[int, int]] = []

    def die_in_window_3(i, n):  # the 2 steps of window 3 (index 2) are global steps 5 and 6
        seen.append((i, n))
        if i == 5:
            raise RenderCanceled("the worker stopped")

    with pytest.raises(RenderCanceled):
        pipe.render(request, die_in_window_3, on_window=lambda i, n, lat: saved.append(lat.clone()))
    assert len(saved) == 2 and seen[-1] == (5, 10)  # windows 1 and 2 finished, window 3 did not
    steps: list[int] = []
    resumed = pipe.render(request, lambda i, n: steps.append(i), resume=saved)
    assert steps == list(range(5, 11))  # windows 3 to 5 only
    assert resumed.engine["windows"]["resumed_at"] == 2
    assert resumed.frames_sha256 == whole.frames_sha256
    assert torch.equal(resumed.latents, whole.latents)


def test_a_long_take_cancels_between_any_two_steps(pipelines, media, track):
    seen = []

    def cancel_mid_window_2(i, n):
        seen.append(i)
        if i == 3:  # window 2's first step of 2
            raise RenderCanceled("take canceled")

    with pytest.raises(RenderCanceled):
        pipelines["tiny"].render(take(media=media, track=track), cancel_mid_window_2)
    assert seen == [1, 2, 3]


def test_resume_refuses_latents_that_are_not_the_takes(pipelines, media, track):
    request = take(media=media, track=track)
    with pytest.raises(ValueError, match="window 0's latents"):
        pipelines["tiny"].render(request, resume=[torch.zeros(16, 5, 4, 4)])


# -- colour hold -----------------------------------------------------------------------------
def test_the_colour_hold_keeps_each_windows_colour_to_the_firsts_and_is_recorded(pipelines, media, track):
    pipe = pipelines["tiny"]
    finished: dict[str, list[torch.Tensor]] = {"off": [], "on": []}
    for hold in finished:
        request = take("tiny", "TIA", 257, media=media, track=track, colour_hold=hold)  # 3 windows
        result = pipe.render(request, on_window=lambda i, n, lat, h=hold: finished[h].append(lat))
        assert result.engine["windows"]["colour_hold"] == hold
        assert result.request.record()["colour_hold"] == hold  # the manifest's request
    assert torch.equal(finished["on"][0], finished["off"][0])  # the first window is its own target
    first_mean, first_std = finished["on"][0].flatten(1).mean(1), finished["on"][0].flatten(1).std(1)

    def drift(lat):  # how far a window's new frames' channel statistics are from the first window's
        new = lat[:, DEFAULT_OVERLAP:].flatten(1)
        return (new.mean(1) - first_mean).abs().mean() + (new.std(1) - first_std).abs().mean()

    for on, off in zip(finished["on"][1:], finished["off"][1:]):
        assert drift(on) < 0.5 * drift(off), (float(drift(on)), float(drift(off)))
        # the overlap is still the previous window's, untouched by the hold
    for before, after in zip(finished["on"], finished["on"][1:]):
        assert torch.equal(after[:, :DEFAULT_OVERLAP], before[:, -DEFAULT_OVERLAP:])


# -- decoding --------------------------------------------------------------------------------
def test_the_streamed_decode_equals_one_whole_decode(pipelines):
    vae = pipelines["tiny"].vae
    latents = torch.randn(16, 9, 4, 4, generator=torch.Generator().manual_seed(0))
    whole = vae.decode(latents[None])[0]
    chunks = list(vae.stream(latents))
    assert [c.shape[1] for c in chunks] == [1] + [4] * 8
    torch.testing.assert_close(torch.cat(chunks, dim=1), whole, rtol=0, atol=1e-5)


MEASURE = """
import os, torch
torch.set_num_threads(1)
from models.specs import TINY
from models.vae import VideoVAE, build_vae
torch.manual_seed(0)
vae = VideoVAE(build_vae(TINY.vae))
latents = torch.randn(16, 25 + 20 * 9, 4, 4)  # 10 windows of 25 latent frames, 5 of overlap
page = os.sysconf("SC_PAGE_SIZE") / 2**20
resident = lambda: int(open("/proc/self/statm").read().split()[1]) * page  # MiB now
most = []
for i, chunk in enumerate(vae.stream(latents)):  # each chunk dropped as it comes
    most.append(max(most[-1:] + [resident()]))
print(len(most), most[0], most[44], most[-1])  # after the first chunk, 2 windows and 10
"""


def test_decode_memory_stays_flat_from_2_to_10_windows():
    """The streamed decode's resident memory, measured in a fresh process at every chunk: the
    most after 10 windows' latent frames is the most after 2. glibc's mmap threshold is fixed for
    the measure: its sliding default keeps freed frame buffers in a heap that fragments."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    chunks, first, two, ten = proc.stdout.split()
    print(f"decode resident MiB: first chunk {float(first):.2f}, 2 windows {float(two):.2f}, 10 {float(ten):.2f}")
    assert int(chunks) == 205
    assert float(ten) - float(two) < 1.0  # MiB: flat (the 10-window clip's frames alone are 10 MiB)


# -- requests --------------------------------------------------------------------------------
def field_of(request: RenderRequest, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        request.resolved(**kwargs)
    return info.value


def test_frames_go_to_the_maximum_and_no_further(media, track):
    assert take(frames=1501, media=media, track=track).resolved().frames == 1501
    assert len(take(frames=1501, media=media, track=track).resolved().windows) == 19
    err = field_of(take(frames=1505, media=media, track=track))
    assert err.field == "frames" and "1501" in err.message
    err = field_of(take(frames=1501, width=256, height=256, media=media, track=track))
    assert err.field == "frames" and "pixels" in err.message and "at most 1125 frames" in err.message
    err = field_of(take(frames=401, width=256, height=256, overlap=13, media=media, track=track))
    assert err.field == "overlap" and "12" in err.message


def test_fit_sets_the_frames_that_cover_the_audio(media, track, tmp_path):
    fitted = RenderRequest(prompt="p", mode="TA", audio=str(track), fit="audio").resolved()
    assert fitted.frames == 425 and fitted.fit == "audio"  # 17 s = 425 frames, already 4k+1
    odd = write_wav(tmp_path / "odd.wav", seconds=3.3, rate=16_000)  # 82.5 frames -> 83 -> 85
    assert RenderRequest(prompt="p", mode="TA", audio=str(odd), fit="audio").resolved().frames == 85
    # the same frames again (a re-render from the manifest) are fine, others are not
    assert RenderRequest(prompt="p", mode="TA", audio=str(odd), fit="audio", frames=85).resolved().frames == 85
    err = field_of(RenderRequest(prompt="p", mode="TA", audio=str(odd), fit="audio", frames=97))
    assert err.field == "frames" and "85" in err.message
    # the caller may know the length (the farm's assets): no file is opened then
    known = RenderRequest(prompt="p", mode="TA", audio="nowhere.wav", fit="audio")
    assert known.resolved(probe_files=False, audio_seconds=16.0).frames == 401


def test_fit_refuses_audio_it_cannot_fit(media, tmp_path):
    blip = write_wav(tmp_path / "blip.wav", seconds=0.02, rate=16_000)
    err = field_of(RenderRequest(prompt="p", mode="TA", audio=str(blip), fit="audio"))
    assert err.field == "fit" and "shorter than one frame" in err.message
    err = field_of(
        RenderRequest(prompt="p", mode="TA", audio="x.wav", fit="audio"), probe_files=False, audio_seconds=61
    )
    assert err.field == "fit" and "at most 1501 frames" in err.message and "61.0 s" in err.message
    err = field_of(RenderRequest(prompt="p", mode="T", fit="audio"))
    assert err.field == "fit" and "audio track" in err.message


def test_a_steps_work_counts_every_windows_tokens(media, track):
    one = take(frames=97, media=media, track=track).resolved()
    assert one.step_tokens == TINY.tokens(97, 32, 32) == 26 * 2 * 2
    five = take(frames=401, media=media, track=track).resolved()  # windows of 25, 25, 25, 25, 21 latent frames
    assert five.step_tokens == (4 * 26 + 22) * 2 * 2


def test_a_windows_tokens_stay_within_the_checkpoints_limit():
    for frames in (97, 161, 1501):  # every window is at most 97 frames
        r = RenderRequest(prompt="p", mode="T", checkpoint="humo-17b", width=1280, height=720, frames=frames)
        assert r.resolved().spec.window_tokens(frames, 720, 1280) == 26 * 45 * 80
    err = field_of(RenderRequest(prompt="p", mode="T", checkpoint="humo-1.7b", width=1280, height=1280, frames=401))
    assert err.field == "frames" and "windows of 97 frames" in err.message and "at most 85 frames" in err.message


# -- the CLI ---------------------------------------------------------------------------------
def test_the_cli_renders_a_401_frame_take(weights, media, track, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the fixture above, for the CLI's process
    out = tmp_path / "long.mp4"
    proc = run_cli(
        "--checkpoint", "tiny", "--frames", "401", "--steps", "1", "--width", "32", "--height", "32",
        "--prompt", "a presenter", "--image", str(media["image"]), "--audio", str(track), "-o", str(out),
        weights=weights,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "5 windows" in proc.stderr and "5/5" in proc.stderr  # 5 windows of 1 step
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["frames"], summary["windows"], summary["audio"]) == (401, 5, "trimmed")
    info, _ = probe(out)
    assert info["frames"] == 401 and info["audio"]["seconds"] == pytest.approx(401 / 25, abs=0.05)
