"""Bad input: a clear error naming the field and the fix, before any model runs."""

import pytest

from models import InputError, RenderRequest, render
from models.media import load_audio, load_image


def field_of(request: RenderRequest) -> InputError:
    with pytest.raises(InputError) as info:
        request.resolved()
    return info.value


@pytest.mark.parametrize(
    "width,height,field", [(60, 48, "width"), (64, 50, "height"), (0, 48, "width"), (-16, 48, "width")]
)
def test_size_must_be_a_multiple_of_16(width, height, field):
    err = field_of(RenderRequest(prompt="p", mode="T", width=width, height=height))
    assert err.field == field and "multiple of 16" in err.message


@pytest.mark.parametrize("frames", [16, 18, 0, 98])
def test_frames_must_be_4k_plus_1(frames):
    err = field_of(RenderRequest(prompt="p", mode="T", frames=frames))
    assert err.field == "frames" and "4k+1" in err.message


def test_unknown_checkpoint_and_mode_list_the_choices():
    err = field_of(RenderRequest(prompt="p", checkpoint="humo-3b"))
    assert err.field == "checkpoint" and "humo-1.7b" in err.message and "humo-17b" in err.message
    err = field_of(RenderRequest(prompt="p", mode="TX"))
    assert err.field == "mode" and "TIA" in err.message


@pytest.mark.parametrize("mode,field", [("TIA", "image"), ("TI", "image"), ("TA", "audio")])
def test_a_mode_whose_input_is_missing(mode, field, media):
    kwargs = {"image": str(media["image"]), "audio": str(media["audio"])}
    kwargs.pop(field)
    err = field_of(RenderRequest(prompt="p", mode=mode, **kwargs))
    assert err.field == field and f"mode {mode} needs" in err.message


def test_empty_prompt_bad_seed_and_scales():
    assert field_of(RenderRequest(prompt="  ", mode="T")).field == "prompt"
    assert field_of(RenderRequest(prompt="p", mode="T", seed=-1)).field == "seed"
    assert field_of(RenderRequest(prompt="p", mode="T", steps=0)).field == "steps"
    assert field_of(RenderRequest(prompt="p", mode="T", scale_text=1e9)).field == "scale_text"


def test_missing_files_are_named(media):
    err = field_of(RenderRequest(prompt="p", mode="TA", audio=str(media["folder"] / "nope.wav")))
    assert err.field == "audio" and "not found" in err.message


def test_unreadable_and_unsupported_images_say_the_format(tmp_path, media):
    fake = tmp_path / "face.png"
    fake.write_text("this is not a picture")
    with pytest.raises(InputError, match="image: face.png is not a readable image") as info:
        load_image(fake, 64, 48)
    assert info.value.field == "image"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "anim.gif")
    with pytest.raises(InputError, match="unsupported image format GIF"):
        load_image(tmp_path / "anim.gif", 64, 48)
    # a request fails the same way before any model loads
    with pytest.raises(InputError, match="image: face.png is not a readable image"):
        render(RenderRequest(prompt="p", mode="TI", image=str(fake)), weights="/nonexistent")


def test_unreadable_audio_and_audio_less_files(tmp_path, media):
    junk = tmp_path / "voice.wav"
    junk.write_bytes(b"RIFF....garbage" * 10)
    with pytest.raises(InputError, match="audio: voice.wav is not a readable audio file") as info:
        load_audio(junk)
    assert info.value.field == "audio"
    with pytest.raises(InputError, match="has no audio stream"):
        load_audio(media["image"])
    with pytest.raises(InputError, match="audio: voice.wav is not a readable audio file"):
        RenderRequest(prompt="p", mode="TA", audio=str(junk)).resolved()


@pytest.mark.parametrize(
    "checkpoint,changes,field,words",
    [
        ("tiny", {"width": 256, "height": 256, "frames": 1501}, "frames", "at most 1125 frames"),  # the pixel budget
        ("humo-17b", {"width": 1296, "height": 720}, "width", "at most 1280"),
        ("humo-17b", {"width": 720, "height": 1296}, "height", "at most 1280"),
        ("tiny", {"width": 272}, "width", "at most 256"),
        # each within its own limit, together past the token budget: the frames that fit are named
        ("humo-1.7b", {"width": 1280, "height": 1280, "frames": 97}, "frames", "at most 85 frames at this size"),
    ],
)
def test_each_checkpoint_bounds_one_take(checkpoint, changes, field, words):
    err = field_of(RenderRequest(prompt="p", mode="T", checkpoint=checkpoint, **changes))
    assert err.field == field and words in err.message and checkpoint in err.message


def test_the_largest_take_a_checkpoint_allows_is_accepted():
    for checkpoint in ("humo-1.7b", "humo-17b"):
        for width, height in ((1280, 720), (720, 1280)):
            req = RenderRequest(prompt="p", mode="T", checkpoint=checkpoint, width=width, height=height, frames=1501)
            r = req.resolved()  # a minute at 720p: windows of 97 frames, its frames within the pixel budget
            assert r.frames * r.height * r.width == r.spec.limits.pixels
            assert r.spec.window_tokens(r.frames, r.height, r.width) <= r.spec.limits.tokens
    square = RenderRequest(prompt="p", mode="T", checkpoint="humo-1.7b", width=1280, height=1280, frames=85)
    assert square.resolved().frames == 85  # the largest that fits at 1280x1280, as the error says
