"""Few-step sampling as render parameters: the sampler (UniPC or Euler), given timesteps, and
guidance off (one DiT pass per step), checked against schedules worked out by hand."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import av
import numpy as np
import pytest
import torch

from farm.api.schemas import take_create_model
from farm.batches import parse_batch_file
from models import InputError, RenderRequest
from models.cli import build_parser
from models.guidance import Condition, full_condition, passes_for
from models.request import PARAMS
from models.sampler import FlowEuler, describe, make_scheduler, model_timesteps
from models.specs import MODES, SPECS

from .test_cli import run_cli

SAMPLERS = ("unipc", "euler")
DISTILLED = "1000,750,500,250"


def by_hand(steps: int, shift: float) -> tuple[list[float], list[int]]:
    """Wan's schedule in plain Python: sigmas evenly from 0.999 towards 0 (0 left out), shifted
    by s' = shift*s / (1 + (shift-1)*s); the DiT sees floor(1000 s')."""
    base = [0.999 * (1 - i / steps) for i in range(steps)]
    shifted = [shift * s / (1 + (shift - 1) * s) for s in base]
    return shifted, [math.floor(1000 * s) for s in shifted]


@contextmanager
def dit_calls(pipe):
    """Every DiT forward's (x, t, text, audio) while the block runs; the hook is removed after."""
    calls: list[tuple[torch.Tensor, ...]] = []
    handle = pipe.dit.register_forward_pre_hook(lambda module, args: calls.append(tuple(a.clone() for a in args)))
    try:
        yield calls
    finally:
        handle.remove()


# -- the schedules -------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps,shift", [(4, 8.0), (6, 8.0), (1, 5.0), (50, 5.0)])
def test_each_samplers_dit_timesteps_are_wans_shifted_schedule(sampler, steps, shift):
    sigmas, timesteps = by_hand(steps, shift)
    scheduler = make_scheduler(steps, shift, sampler)
    assert model_timesteps(scheduler).tolist() == timesteps
    np.testing.assert_allclose(scheduler.sigmas.numpy(), [*sigmas, 0.0], rtol=1e-6, atol=1e-7)
    if (steps, shift) == (4, 8.0):
        assert timesteps == [999, 959, 888, 727]  # the oracle itself, written out
    assert describe(scheduler)["timesteps"] == timesteps and describe(scheduler)["shift"] == shift


def test_both_samplers_step_on_the_same_sigmas():
    unipc, euler = make_scheduler(5, 8.0, "unipc"), make_scheduler(5, 8.0, "euler")
    assert torch.equal(unipc.sigmas, euler.sigmas) and torch.equal(model_timesteps(unipc), model_timesteps(euler))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("given", [(1000, 750, 500, 250), (1000,), (999, 500, 1), tuple(range(1000, 0, -1))])
def test_given_timesteps_are_exactly_what_the_dit_sees(sampler, given):
    scheduler = make_scheduler(len(given), 8.0, sampler, given)  # shift does not apply to them
    assert model_timesteps(scheduler).tolist() == list(given)
    sigmas = scheduler.sigmas.double().numpy()
    # sigma t/1000, the last step to 0; UniPC nudges a sigma of 1 to 1 - 1e-6 (its solver takes log(1 - sigma))
    np.testing.assert_allclose(sigmas, [t / 1000 for t in given] + [0.0], rtol=0, atol=2e-6)
    assert describe(scheduler)["shift"] == 1.0 and describe(scheduler)["timesteps"] == list(given)


def test_the_euler_step_is_x_plus_the_sigma_difference_times_v():
    scheduler = make_scheduler(4, 8.0, "euler")
    assert isinstance(scheduler, FlowEuler)
    sigmas, _ = by_hand(4, 8.0)
    sigmas.append(0.0)
    x = torch.randn(2, 16, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    for i, t in enumerate(scheduler.timesteps):
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + i))  # a fake DiT output
        expected = x + (sigmas[i + 1] - sigmas[i]) * v
        x = scheduler.step(v, t, x, return_dict=False)[0]
        torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(IndexError):
        scheduler.step(v, 0, x)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("given", [None, (1000, 750, 500, 250), (1000,)])
def test_a_constant_velocity_is_integrated_exactly(sampler, given):
    """x_t = x0 + sigma * v with constant v: every schedule must land on x0."""
    scheduler = make_scheduler(4 if given is None else len(given), 8.0, sampler, given)
    x0, v = torch.randn(4, 3), torch.randn(4, 3)
    x = x0 + scheduler.sigmas[0] * v
    for t in scheduler.timesteps:
        x = scheduler.step(v[None], t, x[None], return_dict=False)[0][0]
    torch.testing.assert_close(x, x0, rtol=1e-4, atol=1e-4)


# -- guidance off --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize("mode", MODES)
def test_guidance_off_is_the_chains_most_conditioned_pass_alone(spec, mode):
    for t in (999.0, 500.0):
        chain = passes_for(SPECS[spec], mode, t)
        assert passes_for(SPECS[spec], mode, t, guidance="off") == [(chain[-1][0], 0.0)]
    assert full_condition(mode) == Condition(True, "I" in mode, "A" in mode)
    with pytest.raises(ValueError, match="unknown guidance"):
        passes_for(SPECS[spec], mode, 999.0, guidance="maybe")


@pytest.mark.parametrize("checkpoint", ["tiny", "tiny-concat"])
@pytest.mark.parametrize("mode", ["TA", "TIA"])
def test_guidance_off_makes_one_fully_conditioned_dit_call_per_step(pipelines, media, checkpoint, mode):
    pipe = pipelines[checkpoint]
    request = RenderRequest(
        prompt="a presenter", checkpoint=checkpoint, mode=mode, image=str(media["image"]), audio=str(media["audio"]),
        steps=3, guidance="off", sampler="euler", seed=2,
    )  # fmt: skip
    req = request.resolved()
    inputs = pipe.encode_inputs(req)
    engine: dict = {}
    with dit_calls(pipe) as calls:
        pipe.denoise(req, inputs, engine=engine)
    assert len(calls) == 3  # one per step: no negative, no null pass
    assert [int(t) for _, t, _, _ in calls] == model_timesteps(make_scheduler(3, req.shift, "euler")).tolist()
    for x, t, text, audio in calls:
        assert x.shape[0] == 1 and t.shape == (1,)
        assert torch.equal(text, inputs.text) and not torch.equal(text, inputs.negative)  # the prompt
        assert torch.equal(audio, inputs.audio) and audio.abs().sum() > 0  # the audio
        # the reference image: the last latent frame (1.7B overwrite) or the conditioning channels (17B concat)
        ref = x[0, :16, -1] if pipe.spec.image_conditioning == "overwrite" else x[0, 20:, -1]
        if "I" in mode:
            assert torch.equal(ref, inputs.reference[:, 0]) and ref.abs().sum() > 0
        elif pipe.spec.image_conditioning == "overwrite":
            assert ref.abs().sum() == 0
    assert engine["passes"] == {"guidance": "off", "per_step": [1, 1, 1], "each": 1, "batched": False}


def test_guidance_on_still_runs_the_whole_chain(pipelines, media):
    pipe = pipelines["tiny"]
    req = RenderRequest(prompt="p", mode="TIA", image=str(media["image"]), audio=str(media["audio"]), steps=2)
    with dit_calls(pipe) as calls:
        engine = pipe.render(req).engine
    assert len(calls) == 2 * 4 and engine["passes"]["guidance"] == "on" and engine["passes"]["each"] == 4


def test_given_timesteps_reach_the_dit_as_given(pipelines):
    pipe = pipelines["tiny"]
    for sampler in SAMPLERS:
        request = RenderRequest(prompt="p", mode="T", timesteps=DISTILLED, sampler=sampler, guidance="off")
        with dit_calls(pipe) as calls:
            result = pipe.render(request)
        assert [int(t) for _, t, _, _ in calls] == [1000, 750, 500, 250]
        assert result.request.steps == 4 and result.engine["sampler"]["timesteps"] == [1000, 750, 500, 250]


# -- whole renders -------------------------------------------------------------------------


def tia(media, **changes) -> RenderRequest:
    return RenderRequest(
        prompt="a presenter talks to camera", mode="TIA", image=str(media["image"]), audio=str(media["audio"]),
        seed=5, **changes,
    )  # fmt: skip


def test_a_four_step_euler_render_without_guidance_is_playable_and_reproducible(pipelines, media, tmp_path):
    pipe = pipelines["tiny"]
    steps = []
    first = pipe.render(tia(media, sampler="euler", steps=4, guidance="off"), lambda i, n: steps.append((i, n)))
    assert steps == [(i, 4) for i in range(1, 5)]
    first.write(tmp_path / "clip.mp4", tmp_path / "thumb.jpg")
    with av.open(str(tmp_path / "clip.mp4")) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video)])
    assert frames.shape == (17, 48, 64, 3) and frames.std() > 1  # 17 frames, not a blank clip
    assert (tmp_path / "thumb.jpg").stat().st_size > 0

    again = pipe.render(tia(media, sampler="euler", steps=4, guidance="off"))
    assert again.frames_sha256 == first.frames_sha256
    unipc = pipe.render(tia(media, sampler="unipc", steps=4, guidance="off"))
    guided = pipe.render(tia(media, sampler="euler", steps=4))
    assert len({first.frames_sha256, unipc.frames_sha256, guided.frames_sha256}) == 3

    engine = first.engine
    assert json.loads(json.dumps(engine)) == engine  # the manifest writes it as it is
    assert engine["sampler"] == {
        "name": "FlowMatchEuler", "prediction_type": "flow_prediction", "solver_order": 1, "shift": 5.0,
        "timesteps": by_hand(4, 5.0)[1], "steps": 4,
    }  # fmt: skip
    assert engine["passes"] == {"guidance": "off", "per_step": [1, 1, 1, 1], "each": 1, "batched": False}
    record = first.request.record()
    assert (record["sampler"], record["timesteps"], record["guidance"]) == ("euler", None, "off")


@pytest.mark.parametrize("checkpoint", ["tiny", "tiny-concat"])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("schedule", [{"steps": 1}, {"timesteps": "1000"}])
def test_one_step_renders_with_each_sampler(pipelines, media, checkpoint, sampler, schedule):
    request = RenderRequest(
        prompt="p", checkpoint=checkpoint, mode="TIA", image=str(media["image"]), audio=str(media["audio"]),
        sampler=sampler, guidance="off", **schedule,
    )  # fmt: skip
    result = pipelines[checkpoint].render(request)
    assert torch.isfinite(result.latents).all() and result.frames.std() > 1
    assert result.engine["sampler"]["timesteps"] == ([999] if "steps" in schedule else [1000])
    assert result.engine["passes"]["per_step"] == [1]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,field,words",
    [
        ({"sampler": "ddim"}, "sampler", "unknown sampler 'ddim'; choose one of unipc, euler"),
        ({"guidance": "none"}, "guidance", "choose one of on, off"),
        ({"timesteps": "1000,1000"}, "timesteps", "1000 follows 1000: the timesteps must strictly decrease"),
        ({"timesteps": "0,5"}, "timesteps", "0 is out of range; each timestep is from 1 to 1000"),
        ({"timesteps": "a,b"}, "timesteps", "'a' is not an integer; give integers from 1 to 1000"),
        ({"timesteps": "1001"}, "timesteps", "1001 is out of range"),
        ({"timesteps": "250,500,750"}, "timesteps", "500 follows 250"),
        ({"timesteps": "1000,,250"}, "timesteps", "an empty entry is not an integer"),
        ({"timesteps": "1000,-5"}, "timesteps", "'-5' is not an integer"),
        ({"timesteps": "1000,750.5"}, "timesteps", "'750.5' is not an integer"),
        ({"timesteps": ",".join(["1"] * 1001)}, "timesteps", "1001 entries; at most 1000 timesteps"),
        ({"timesteps": "1" * 5001}, "timesteps", "5001 characters; at most 5000"),
        ({"timesteps": DISTILLED, "steps": 6}, "timesteps", "4 timesteps given but steps is 6; leave steps unset"),
    ],
)
def test_bad_values_name_the_field_and_the_fix(changes, field, words):
    with pytest.raises(InputError) as info:
        RenderRequest(prompt="p", **changes).resolved()
    assert info.value.field == field and words in info.value.message


def test_given_timesteps_set_steps_and_are_recorded_normalized():
    r = RenderRequest(prompt="p", timesteps=" 1000, 750,500 ,250 ").resolved()
    assert (r.steps, r.timesteps, r.given_timesteps) == (4, DISTILLED, (1000, 750, 500, 250))
    assert RenderRequest(prompt="p", timesteps=DISTILLED, steps=4).resolved().steps == 4  # agreeing is fine
    assert RenderRequest(prompt="p", timesteps="  ").resolved().timesteps is None  # blank: unset
    whole = ",".join(str(t) for t in range(1000, 0, -1))  # the longest list there is
    assert RenderRequest(prompt="p", timesteps=whole).resolved().steps == 1000
    defaults = RenderRequest(prompt="p").resolved()
    assert (defaults.sampler, defaults.timesteps, defaults.guidance, defaults.given_timesteps) == (
        "unipc",
        None,
        "on",
        None,
    )


# -- every surface has them ----------------------------------------------------------------


def test_the_parameters_reach_the_api_the_cli_the_batch_files_and_the_form():
    names = [p.name for p in PARAMS]
    assert names[names.index("shift") + 1 : names.index("shift") + 4] == ["sampler", "timesteps", "guidance"]
    new = {p.name: p for p in PARAMS if p.name in ("sampler", "timesteps", "guidance")}
    assert all(p.advanced and p.hero == "checkpoint" for p in new.values())  # a hero re-render: full quality

    schema = take_create_model().model_json_schema()
    props = schema["properties"]
    enums = {name: json.dumps(props[name]) for name in ("sampler", "guidance")}
    assert '"unipc"' in enums["sampler"] and '"euler"' in enums["sampler"] and '"off"' in enums["guidance"]
    assert props["timesteps"]["maxLength"] == 5000

    parser = build_parser()
    args = parser.parse_args(["render", "--prompt", "p", "--sampler", "euler", "--no-guidance", "-o", "x.mp4"])
    assert (args.sampler, args.guidance, args.timesteps) == ("euler", "off", None)
    args = parser.parse_args(["render", "--prompt", "p", "--guidance", "off", "--timesteps", DISTILLED, "-o", "x"])
    assert (args.guidance, args.timesteps) == ("off", DISTILLED)
    assert parser.parse_args(["render", "--prompt", "p", "-o", "x"]).guidance is None  # unset: the default

    body = parse_batch_file("b.csv", f'prompt,sampler,timesteps,guidance\na,euler,"{DISTILLED}",off\n'.encode())
    assert body == {"takes": [{"prompt": "a", "sampler": "euler", "timesteps": DISTILLED, "guidance": "off"}]}

    form = {d["name"]: d for d in (p.describe(SPECS["tiny"]) for p in new.values())}
    assert form["sampler"]["choices"] == ["unipc", "euler"] and form["sampler"]["default"] == "unipc"
    assert form["guidance"]["choices"] == ["on", "off"] and form["guidance"]["default"] == "on"
    assert form["timesteps"]["default"] is None and form["timesteps"]["max_length"] == 5000


def test_the_cli_renders_few_steps_without_guidance(weights, tmp_path):
    out = tmp_path / "take.mp4"
    args = ("--checkpoint", "tiny", "--prompt", "p", "--sampler", "euler", "--steps", "4", "--no-guidance")
    proc = run_cli(*args, "-o", str(out), weights=weights)
    assert proc.returncode == 0, proc.stderr
    assert "4/4" in proc.stderr and out.stat().st_size > 0
    proc = run_cli("--prompt", "p", "--timesteps", "500,750", "-o", str(tmp_path / "x.mp4"), weights=weights)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: timesteps: 750 follows 500")
