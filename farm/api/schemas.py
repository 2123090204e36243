"""The API contract (OpenAPI at /docs): what clients send and receive."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Mode = Literal["T", "TI", "TA", "TIA"]


def _printable(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ValueError("control characters are not allowed")
    return value


Text = Annotated[str, AfterValidator(_printable)]


class TakeCreate(BaseModel):
    """One take. Unset fields come from the batch's `defaults`, then the checkpoint's."""

    model_config = ConfigDict(extra="forbid")
    prompt: Text | None = None
    negative_prompt: Text | None = None
    checkpoint: str | None = Field(None, description="humo-1.7b, humo-17b, tiny, ...")
    pool: Literal["explore", "hero"] | None = None
    mode: Mode | None = Field(None, description="default: from the inputs given")
    image: str | None = Field(None, description="sha256 of an uploaded image asset")
    audio: str | None = Field(None, description="sha256 of an uploaded audio asset")
    seed: int | None = Field(None, ge=0, lt=2**63, description="default: a random seed, recorded")
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    shift: float | None = None
    scale_text: float | None = None
    scale_audio: float | None = None
    scale_image: float | None = None
    priority: int | None = Field(None, ge=-1000, le=1000)


class SweepOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    where: dict[str, str | int] = Field(default_factory=dict, description="prompt, seed and/or checkpoint to match")
    set: TakeCreate


class Sweep(BaseModel):
    """prompts x seeds x checkpoints, every combination one take."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[Text] = Field(min_length=1)
    seeds: list[int] | None = None
    seed_count: int | None = Field(None, ge=1, le=10_000)
    checkpoints: list[str] | None = None
    overrides: list[SweepOverride] = Field(default_factory=list)


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Text = Field("default", min_length=1, max_length=200)
    name: Text | None = Field(None, max_length=200)
    producer: Text | None = Field(None, max_length=100, description="operators only: submit on this producer's behalf")
    defaults: TakeCreate | None = None
    takes: list[TakeCreate] = Field(default_factory=list)
    sweep: Sweep | None = None


class Counts(BaseModel):
    queued: int = 0
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
    error_class: str | None
    error_message: str | None


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


class TakesPublic(BaseModel):
    data: list[TakePublic]
    count: int
    next_cursor: str | None


class AssetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    sha256: str
    kind: str
    size: int
    filename: str
    media_format: str
    created: bool = False


class PriorityUpdate(BaseModel):
    priority: int = Field(ge=-1000, le=1000)


class SelectUpdate(BaseModel):
    selected: bool = True


class ErrorPublic(BaseModel):
    detail: str
    field: str | None = None
