"""The API contract (OpenAPI at /docs): what clients send and receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, computed_field, create_model
from pydantic.json_schema import JsonDict

from models.params import Param, text_problem
from models.request import MAX_LORA_STRENGTH, MAX_LORAS, PARAMS

from .. import nightly, webhooks
from ..batches import MAX_CHECKPOINTS, MAX_OVERRIDES, MAX_TAKES
from ..errors import InvalidRequest
from ..tables import Role


def _printable(value: str) -> str:
    problem = text_problem(value)  # the engine's rule for text, at the door for every string field
    if problem:
        raise ValueError(problem)
    return value


Text = Annotated[str, AfterValidator(_printable)]


def _param_field(p: Param) -> tuple[Any, Any]:
    """A render parameter as an optional API field; the engine checks its value and bounds
    (so every error names `takes[i].<name>` and the fix), the schema documents them."""
    kind: Any = Literal[p.choices] if p.choices else Text if p.type is str else p.type
    facts = (("minimum", p.minimum), ("maximum", p.maximum), ("maxLength", p.max_length))
    bounds: JsonDict = {k: v for k, v in facts if v is not None}
    return kind | None, Field(None, description=p.help, json_schema_extra=bounds or None)


class LoraUseCreate(BaseModel):
    """One LoRA of a take's stack: an uploaded LoRA (POST /loras) and how strongly it applies."""

    model_config = ConfigDict(extra="forbid")
    asset: Text = Field(min_length=64, max_length=64, description="sha256 of an uploaded LoRA")
    strength: float = Field(
        1.0, ge=-MAX_LORA_STRENGTH, le=MAX_LORA_STRENGTH, allow_inf_nan=False, description="0 changes nothing"
    )


#: a take's LoRAs, stacked in order
LoraStack = Annotated[list[LoraUseCreate], Field(max_length=MAX_LORAS)]


def take_create_model(params: tuple[Param, ...] = PARAMS) -> type[BaseModel]:
    """The API's take: the render parameters plus what the farm adds (checkpoint, pool,
    assets, priority). Unset fields come from the batch's `defaults`, then the checkpoint's."""
    # name -> (type, default); typed Any since the stubs' TypeForm does not take a `str | None` value
    fields: dict[str, Any] = {
        "checkpoint": (Text | None, Field(None, max_length=100, description="humo-1.7b, humo-17b, tiny, ...")),
        "pool": (Literal["explore", "hero"] | None, None),
        "image": (Text | None, Field(None, max_length=64, description="sha256 of an uploaded image asset")),
        "audio": (Text | None, Field(None, max_length=64, description="sha256 of an uploaded audio asset")),
        "priority": (int | None, Field(None, ge=-1000, le=1000)),
        "loras": (LoraStack | None, Field(None, description="LoRAs stacked on the DiT, in order")),
        "preset": (
            Text | None,
            Field(None, max_length=100, description="a preset's fields (GET /presets) under this take's own"),
        ),
        **{p.name: _param_field(p) for p in params},
    }
    return create_model(
        "TakeCreate",
        __config__=ConfigDict(extra="forbid"),
        __doc__="One take. Unset fields come from the batch's `defaults`, then the checkpoint's.",
        **fields,
    )


TakeCreate = take_create_model()


def check_presets(presets: dict[str, dict[str, Any]], checkpoint: str) -> None:
    """Every preset is a take's fields (any but `preset`), with values the engine takes (on its
    checkpoint, else `checkpoint`): a bad one stops the dispatcher at start, naming the preset
    and the field."""
    from models import InputError, RenderRequest

    for name, fields in presets.items():
        if not name or len(name) > 100 or text_problem(name):
            raise InvalidRequest("FARM_PRESETS", f"preset name {name[:40]!r}: use 1 to 100 printable characters")
        if "preset" in fields:
            raise InvalidRequest("FARM_PRESETS", f"preset {name!r} names another preset; write its fields out")
        try:
            TakeCreate.model_validate(fields)
            params = {p.name: fields[p.name] for p in PARAMS if fields.get(p.name) is not None}
            given = {"prompt": "a preset check", **params, "checkpoint": fields.get("checkpoint") or checkpoint}
            RenderRequest(**given).resolved(probe_files=False)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise InvalidRequest("FARM_PRESETS", f"preset {name!r}: {where}: {error['msg']}") from None
        except InputError as exc:
            raise InvalidRequest("FARM_PRESETS", f"preset {name!r}: {exc}") from None


#: a sweep's prompt, bounded as a take's prompt is
SweepPrompt = Annotated[Text, Field(max_length=next(p.max_length for p in PARAMS if p.name == "prompt"))]


class SweepOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    where: dict[Text, Annotated[Text, Field(max_length=4000)] | int] = Field(
        default_factory=dict, max_length=20, description="prompt, seed and/or checkpoint to match"
    )
    set: TakeCreate  # type: ignore[valid-type]


class Sweep(BaseModel):
    """prompts x seeds x checkpoints x LoRA stacks, every combination one take."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[SweepPrompt] = Field(min_length=1, max_length=MAX_TAKES)
    seeds: list[int] | None = Field(None, max_length=MAX_TAKES)
    seed_count: int | None = Field(None, ge=1, le=10_000)
    checkpoints: list[Annotated[Text, Field(max_length=100)]] | None = Field(None, max_length=MAX_CHECKPOINTS)
    loras: list[LoraStack] | None = Field(
        None, max_length=MAX_CHECKPOINTS, description="LoRA stacks to sweep (e.g. strengths of one LoRA)"
    )
    overrides: list[SweepOverride] = Field(default_factory=list, max_length=MAX_OVERRIDES)


def _event(value: str) -> str:
    if value not in webhooks.EVENTS:
        raise ValueError(f"{value!r} is not an event; choose from {', '.join(webhooks.EVENTS)}")
    return value


WebhookEvent = Annotated[str, AfterValidator(_event)]  #: one of farm.webhooks.EVENTS
WebhookEvents = Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(webhooks.EVENTS))]


class BatchWebhook(BaseModel):
    """An endpoint for one batch's events, made with the batch (farm.webhooks)."""

    model_config = ConfigDict(extra="forbid")
    url: Text = Field(max_length=2000, description="https://... ; private and loopback hosts are refused")
    events: WebhookEvents = Field(default_factory=lambda: list(webhooks.EVENTS))


class BatchWebhookPublic(BaseModel):
    id: str
    url: str
    events: list[str]
    secret: str = Field(description="the signing secret (whsec_...): shown only in the submit's answer")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Text = Field("default", min_length=1, max_length=200)
    name: Text | None = Field(None, max_length=200)
    producer: Text | None = Field(None, max_length=100, description="operators only: submit on this producer's behalf")
    defaults: TakeCreate | None = None  # type: ignore[valid-type]
    takes: list[TakeCreate] = Field(default_factory=list, max_length=MAX_TAKES)  # type: ignore[valid-type]
    sweep: Sweep | None = None
    webhooks: list[BatchWebhook] = Field(
        default_factory=list, max_length=4, description="endpoints told of this batch's takes and its end"
    )


class Counts(BaseModel):
    queued: int = 0
    paused: int = 0
    released: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    canceled: int = 0


class BatchPublic(BaseModel):
    id: str
    project: str
    name: str
    producer: str
    created_at: datetime
    take_ids: list[str] | None = Field(None, description="every take's id (left out of lists with with_take_ids=false)")
    counts: Counts
    finished: bool
    warnings: list[str] = Field(default_factory=list, description="on submit: what keeps takes waiting")
    webhooks: list[BatchWebhookPublic] | None = Field(default=None, description="on submit: the batch's endpoints")


class BatchActionPublic(BaseModel):
    """What an action on a whole batch did, in words and numbers."""

    batch: BatchPublic
    changed: int = Field(description="takes the action changed at once")
    stopping: int = Field(0, description="cancel: rendering takes that stop after their current step")
    message: str


class CheckpointCostPublic(BaseModel):
    checkpoint: str
    takes: int
    gpu_seconds: float | None = Field(description="None: no take of this checkpoint has finished here yet")
    measured_from: int = Field(description="finished attempts its GPU time per step and token is measured from")


class AudioFitPublic(BaseModel):
    """Takes whose audio runs past their clip (only the clip's span is heard)."""

    audio: str = Field(description="sha256 of the audio")
    filename: str
    audio_seconds: float
    frames: int
    clip_seconds: float
    cover_frames: int | None = Field(description="frames that hear all of it (what `fit: audio` makes); None: none do")
    cannot: str | None = Field(None, description="why no take covers it, and the fix")
    takes: int


class BatchEstimatePublic(BaseModel):
    """A batch's size and GPU time before it is submitted."""

    takes: int
    gpu_seconds: float | None = Field(description="of the checkpoints measured; None when none is")
    checkpoints: list[CheckpointCostPublic]
    confirm: bool = Field(description="big enough that the dashboard and CLI ask before submitting it")
    warnings: list[str] = Field(default_factory=list, description="what would keep takes waiting, audio past the clip")
    audio: list[AudioFitPublic] = Field(default_factory=list, description="takes whose audio runs past the clip")


class AttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    number: int
    worker_id: str
    host: str
    gpu: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    gpu_seconds: float
    start_window: int = Field(0, description="a long take's window (from 0) it started at, after those saved")
    error_class: str | None
    error_message: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds(self) -> float | None:
        """How long the attempt took, claim to its end (None while it runs)."""
        return round((self.finished_at - self.started_at).total_seconds(), 3) if self.finished_at else None


class OutputsPublic(BaseModel):
    clip: str | None = Field(None, description="presigned; lists leave it out (GET /takes/{id} has it)")
    thumbnail: str
    manifest: str | None = Field(None, description="presigned; lists leave it out")
    clip_sha256: str
    clip_size: int


class TakePublic(BaseModel):
    id: str
    batch_id: str
    producer: str
    checkpoint: str
    pool: str
    params: dict
    image: str | None
    audio: str | None
    loras: list[dict] = Field(default_factory=list, description="[{sha256, strength}], stacked in order")
    preset: str | None = None
    priority: int
    state: str
    parent_id: str | None
    selected_for_hero: bool
    cancel_requested: bool
    progress: dict
    attempt_count: int
    max_attempts: int
    error_class: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptPublic] | None = None
    outputs: OutputsPublic | None = None
    consent: dict | None = Field(
        None, description="the consent decision (farm.consent.decide): policy, outcome, each input's records"
    )
    consent_withdrawn: str | None = Field(None, description="why the clip may no longer be downloaded")


class TakesPublic(BaseModel):
    data: list[TakePublic]
    count: int
    total: int | None = Field(None, description="takes matching on all pages (the first page only)")
    next_cursor: str | None


class ProjectPublic(BaseModel):
    name: str
    batches: int


class AssetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    sha256: str
    kind: str
    size: int
    filename: str
    media_format: str
    info: dict[str, Any] | None = Field(
        None, description="a LoRA's reading: format, rank, modules changed, skipped keys, the checkpoints it fits"
    )
    created: bool = False


class PriorityUpdate(BaseModel):
    priority: int = Field(ge=-1000, le=1000)


class SelectUpdate(BaseModel):
    selected: bool = True


class ErrorPublic(BaseModel):
    detail: str
    field: str | None = None


class PoolPublic(BaseModel):
    workers: int  #: live render slots
    queued: int
    released: int
    running: int
    gpu_seconds_24h: float


class WorkerPublic(BaseModel):
    id: str
    pool: str
    host: str
    gpu: str
    alive: bool
    stopped: bool
    state: str = Field(description="one of farm.fleet.STATES: idle, busy, draining, dead, stopped")
    heartbeat_age: float  #: seconds since its last heartbeat
    current_take_id: str | None
    holding: dict | None = Field(
        None, description="what its DiT holds: {checkpoint, loras: [{sha256, strength}]} in order (null: unknown)"
    )
    gpu_seconds_24h: float
    attempts_24h: int


class WorkerActionPublic(BaseModel):
    id: str
    state: str  #: as farm.fleet decides it, after the action
    detail: str  #: what the action did, in words


class CheckpointPublic(BaseModel):
    name: str
    pool: str
    width: int
    height: int
    frames: int
    fps: int  #: frames a second of its clips
    steps: int
    max_tokens: int = Field(description="DiT tokens one take may use: (latent frames + 1) x (height/16) x (width/16)")
    live_workers: int = Field(0, description="serving workers holding this checkpoint now (none: its takes wait)")
    params: list[dict[str, Any]] = Field(
        description="every render parameter, with its default and its maximum on this checkpoint"
    )


class PresetPublic(BaseModel):
    name: str
    fields: dict[str, Any] = Field(description="take fields the preset sets; a take's own fields win")


class Login(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    password: Text = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    name: str
    role: Role
    csrf_token: str | None = Field(
        None, description="send it as X-CSRF-Token with every change made through the session cookie"
    )


class TokenCreate(BaseModel):
    name: Text = Field("api", min_length=1, max_length=100, description="what the token is for")


class TokenCreated(BaseModel):
    token: str = Field(description="shown once: keep it secret")
    name: str


class UserCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=100)
    role: Role
    password: Text | None = Field(None, max_length=1000, description="none: API tokens only")


class UserPublic(BaseModel):
    name: str
    role: Role
    disabled: bool


class SessionPublic(BaseModel):
    user: Me | None


class NightTakePublic(BaseModel):
    id: str
    parent_id: str
    producer: str
    prompt: str | None  #: the parent's, so a producer knows it
    seed: int | None
    state: str
    priority: int
    gpu_seconds: float
    error_class: str | None
    error_message: str | None


class TonightPublic(BaseModel):
    """The night being run now, or the next one to open."""

    night: date
    window_start: datetime
    window_end: datetime
    open: bool  #: its window holds the present moment
    budget_gpu_hours: float


@dataclass
class NightDetailPublic(nightly.NightReport):
    hero_takes: list[NightTakePublic] = field(default_factory=list)


class LivePublic(BaseModel):
    """A take's live view (farm/live.py)."""

    state: str
    step: int
    total: int
    progress: dict = Field(description="as on the take: a long take's also window, windows, window_step, window_steps")
    eta_seconds: float | None = Field(description="running: seconds left at the pace so far (after the first step)")
    queue_position: int | None = Field(
        description="queued: 1 is released next in its pool; null when deeper than queue_lookahead"
    )
    queue_lookahead: int
    preview_step: int | None = Field(description="running: the step of the preview at /takes/{id}/preview.jpg")
