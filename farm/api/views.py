"""Rows -> API shapes."""

from __future__ import annotations

from ..batches import Summary
from ..live import progress
from ..storage import Storage
from ..tables import Attempt, Batch, Output, Take
from .schemas import AttemptPublic, BatchPublic, Counts, OutputsPublic, TakePublic


def take_public(
    take: Take,
    *,
    attempts: list[Attempt] | None = None,
    output: Output | None = None,
    storage: Storage | None = None,
    seconds: int = 3600,
    thumbnail_only: bool = False,
) -> TakePublic:
    outputs = None
    if output is not None and storage is not None:  # presigning is most of a list's time: lists sign the thumbnail
        # a clip whose consent was withdrawn is never handed out again (its thumbnail stays)
        withheld = thumbnail_only or take.consent_withdrawn is not None
        url = lambda key: None if withheld else storage.url(key, seconds)
        outputs = OutputsPublic(
            clip=url(output.clip_key),
            thumbnail=storage.url(output.thumbnail_key, seconds),
            manifest=url(output.manifest_key),
            clip_sha256=output.clip_sha256,
            clip_size=output.clip_size,
        )
    return TakePublic(
        id=take.id,
        batch_id=take.batch_id,
        producer=take.producer,
        checkpoint=take.checkpoint,
        pool=take.pool,
        params=take.params,
        image=take.image_sha256,
        audio=take.audio_sha256,
        loras=take.loras or [],
        preset=take.preset,
        priority=take.priority,
        state=take.state.value,
        parent_id=take.parent_id,
        selected_for_hero=take.selected_for_hero,
        cancel_requested=take.cancel_requested,
        progress=progress(take),
        attempt_count=take.attempt_count,
        max_attempts=take.max_attempts,
        error_class=take.error_class,
        error_message=take.error_message,
        created_at=take.created_at,
        started_at=take.started_at,
        finished_at=take.finished_at,
        attempts=[AttemptPublic.model_validate(a) for a in attempts] if attempts is not None else None,
        outputs=outputs,
        consent=take.consent,
        consent_withdrawn=take.consent_withdrawn,
    )


def batch_public(batch: Batch, summary: Summary) -> BatchPublic:
    return BatchPublic(
        id=batch.id,
        project=summary.project,
        name=batch.name,
        producer=batch.producer,
        created_at=batch.created_at,
        take_ids=summary.take_ids,
        counts=Counts(**{state.value: n for state, n in summary.counts.items()}),
        finished=summary.finished,
    )
