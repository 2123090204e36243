"""The render parameters are defined once (RenderRequest's fields): every surface derives
from that definition, so a new parameter appears everywhere without being spelled again."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from farm.api.schemas import take_create_model
from farm.batches import parse_batch_file
from models import InputError, RenderRequest
from models.cli import build_parser
from models.params import param, params_of
from models.request import PARAMS
from models.specs import SPECS, TINY


@dataclass(frozen=True)
class WithStrength(RenderRequest):
    """The definition plus one parameter, as a LoRA issue would add it."""

    lora_strength: float | None = param(
        float, "LoRA strength", "how strongly the LoRAs apply", default=lambda s: 1.0, minimum=0, maximum=2
    )


def test_a_parameter_added_to_the_definition_reaches_the_api_the_cli_the_batch_files_and_the_form():
    params = params_of(WithStrength)
    assert [p.name for p in params] == [p.name for p in PARAMS] + ["lora_strength"]
    added = params[-1]

    schema = take_create_model(params).model_json_schema()["properties"]["lora_strength"]
    assert {"type": "number"} in schema["anyOf"] and (schema["minimum"], schema["maximum"]) == (0, 2)
    assert schema["description"] == "how strongly the LoRAs apply"

    args = build_parser(params).parse_args(["render", "--prompt", "p", "--lora-strength", "0.5", "-o", "x.mp4"])
    assert args.lora_strength == 0.5

    body = parse_batch_file("b.csv", b"prompt,lora_strength,seed\na,0.25,7\n", params)
    assert body == {"takes": [{"prompt": "a", "lora_strength": 0.25, "seed": 7}]}

    form = added.describe(TINY)
    assert form == {
        "name": "lora_strength", "type": "number", "label": "LoRA strength", "help": "how strongly the LoRAs apply",
        "default": 1.0, "required": False, "advanced": False, "long": False, "minimum": 0, "maximum": 2,
    }  # fmt: skip
    with pytest.raises(InputError) as info:
        added.resolve(3, TINY)
    assert info.value.field == "lora_strength" and "from 0 to 2" in info.value.message
    assert added.resolve(None, TINY) == 1.0


def test_the_api_schema_lists_exactly_the_parameters_plus_the_farms_own_fields():
    farm_fields = {"checkpoint", "pool", "image", "audio", "loras", "preset", "priority"}
    assert set(take_create_model().model_fields) == {p.name for p in PARAMS} | farm_fields


def test_every_parameter_is_recorded_with_its_resolved_value():
    request = RenderRequest(prompt="p", mode="t", steps=3, scale_audio=2.5)
    record = request.resolved().record()
    assert list(record) == [p.name for p in PARAMS]
    assert record["mode"] == "T" and record["steps"] == 3 and record["scale_audio"] == 2.5
    assert record["width"] == TINY.width and record["scale_text"] == TINY.guidance.text  # the checkpoint's defaults
    assert {f.name for f in fields(RenderRequest)} - {p.name for p in PARAMS} == {
        "checkpoint",
        "image",
        "audio",
        "loras",
    }


def test_unset_mode_follows_from_the_inputs_given(tmp_path):
    assert RenderRequest(prompt="p").resolved().mode == "T"
    with pytest.raises(InputError) as info:
        RenderRequest(prompt="p", mode="TA").resolved()
    assert info.value.field == "audio"


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_each_checkpoints_defaults_are_valid_values_of_its_parameters(spec):
    for p in PARAMS:
        if p.default is not None:
            assert p.resolve(None, SPECS[spec]) == p.default(SPECS[spec])


def test_the_form_is_told_each_checkpoints_own_maxima(client):
    """GET /checkpoints (what the submit form is built from) carries each checkpoint's limits,
    and a take at those limits is accepted while one past them is refused by the same numbers."""
    described = {c["name"]: c for c in client.get("/checkpoints").json()}
    for name, spec in SPECS.items():
        maxima = {d["name"]: d.get("maximum") for d in described[name]["params"]}
        assert (maxima["width"], maxima["height"], maxima["frames"]) == (
            spec.limits.side,
            spec.limits.side,
            spec.limits.frames,
        )
        assert described[name]["max_tokens"] == spec.limits.tokens
    assert described["tiny"]["params"] != described["humo-17b"]["params"]
