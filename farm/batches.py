"""Creating batches: a list of takes or a sweep, validated by the engine, idempotent.

Option precedence, written once here: per take beats the preset the take names beats the
batch's defaults beats the preset the defaults name beats the checkpoint's defaults (the
engine fills in what is still unset).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice, product
from pathlib import PurePath
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import InputError, RenderRequest
from models.params import Param
from models.request import PARAMS, LoraUse

from . import consent, db, states
from .errors import IdempotencyConflict, InvalidRequest, NotFound
from .settings import Settings
from .tables import Asset, Batch, Project, Take, TakeState, new_id, utcnow

MAX_TAKES = 20_000  #: per batch
MAX_CHECKPOINTS = 50  #: listed in one sweep
#: per sweep: each is matched against every take of the sweep
MAX_OVERRIDES = 100
#: values (keys, scalars, lists, mappings) in one YAML batch file: 20 per take of MAX_TAKES
MAX_YAML_NODES = 20 * MAX_TAKES
MAX_YAML_DEPTH = 32  #: nesting of lists and mappings in a YAML batch file (a batch needs 5)


#: a sweep's axes, in the order its takes are built (and its size is stated)
AXES = ("prompt", "seed", "checkpoint", "LoRA stack")


def sweep_factors(sweep: dict) -> tuple[int, ...]:
    """A sweep's prompts, seeds, checkpoints and LoRA stacks: its takes are their product
    (counted here, never built to be counted)."""
    seeds = len(sweep.get("seeds") or []) or int(sweep.get("seed_count") or 1)
    stacks = len(sweep.get("loras") or []) or 1
    return len(sweep.get("prompts") or []), seeds, len(sweep.get("checkpoints") or []) or 1, stacks


def pool_of(checkpoint: str, settings: Settings) -> str:
    return "hero" if checkpoint == settings.hero_checkpoint else "explore"


def with_preset(fields: dict, settings: Settings, where: str) -> dict:
    """A take's (or the defaults') fields over the preset they name: what they set themselves wins."""
    name = fields.get("preset")
    if not name:
        return fields
    if name not in settings.presets:
        known = ", ".join(settings.presets) or "none are configured (FARM_PRESETS)"
        raise InvalidRequest(f"{where}.preset", f"unknown preset {name!r}; choose one of {known}")
    return {**settings.presets[name], **fields}


def expand(body: dict, settings: Settings) -> list[dict]:
    """The batch body -> one flat dict per take (defaults applied, sweep expanded). The
    batch's size is counted before anything is built: over MAX_TAKES costs nothing."""
    listed = body.get("takes") or []
    if len(listed) > MAX_TAKES:
        raise InvalidRequest("takes", f"{len(listed)} takes in one batch; split it into batches of at most {MAX_TAKES}")
    sweep = body.get("sweep")
    if sweep:
        factors = sweep_factors(sweep)
        size = math.prod(factors) + len(listed)
        if size > MAX_TAKES:
            named = [(what, n) for what, n in zip(AXES, factors, strict=True) if what != "LoRA stack" or n > 1]
            counts = " x ".join(f"{n} {what}{'s' if n != 1 else ''}" for what, n in named)
            also = f" + {len(listed)} listed takes" if listed else ""
            raise InvalidRequest(
                "sweep",
                f"{counts}{also} = {size} takes; at most {MAX_TAKES} in one batch: "
                "sweep fewer prompts, seeds or checkpoints, or split it into several batches",
            )
    defaults = with_preset(
        {k: v for k, v in (body.get("defaults") or {}).items() if v is not None}, settings, "defaults"
    )
    takes = [
        {**defaults, **with_preset({k: v for k, v in t.items() if v is not None}, settings, f"takes[{i}]")}
        for i, t in enumerate(listed)
    ]
    if sweep:
        seeds = sweep.get("seeds") or []
        if not seeds and sweep.get("seed_count"):
            rng = random.Random()
            seeds = [rng.randrange(2**31) for _ in range(sweep["seed_count"])]
        checkpoints = sweep.get("checkpoints") or [defaults.get("checkpoint") or settings.explore_checkpoint]
        stacks = sweep.get("loras") or [defaults.get("loras")]
        for prompt, seed, checkpoint, stack in product(
            sweep.get("prompts") or [], seeds or [None], checkpoints, stacks
        ):
            take = {**defaults, "prompt": prompt, "seed": seed, "checkpoint": checkpoint, "loras": stack}
            for rule in sweep.get("overrides") or []:
                if all(take.get(k) == v for k, v in (rule.get("where") or {}).items()):
                    take.update({k: v for k, v in (rule.get("set") or {}).items() if v is not None})
            takes.append({k: v for k, v in take.items() if v is not None})
    if not takes:
        raise InvalidRequest("takes", "the batch has no takes; give `takes` or a `sweep` with prompts")
    if len(takes) > MAX_TAKES:
        raise InvalidRequest("takes", f"{len(takes)} takes in one batch; split it into batches of at most {MAX_TAKES}")
    return takes


def _validate(i: int, take: dict, assets: dict[str, Asset], settings: Settings) -> dict:
    """One take -> the Take row's values; an engine InputError names the take and field."""
    checkpoint = take.get("checkpoint") or (
        settings.hero_checkpoint if take.get("pool") == "hero" else settings.explore_checkpoint
    )
    params = {p.name: take[p.name] for p in PARAMS if take.get(p.name) is not None}
    params.setdefault("seed", random.randrange(2**31))  # recorded, so the take is reproducible
    uses = take.get("loras") or []
    try:
        resolved = RenderRequest(
            checkpoint=checkpoint,
            image=take.get("image"),
            audio=take.get("audio"),
            loras=tuple(LoraUse(use.get("asset"), use.get("strength", 1.0)) for use in uses),
            **params,
        ).resolved(probe_files=False)
    except InputError as exc:
        raise InvalidRequest(f"takes[{i}].{exc.field}", exc.message) from None
    for j, use in enumerate(resolved.loras):
        asset = assets.get(use.path)
        if asset is None or asset.kind != "lora":
            raise InvalidRequest(
                f"takes[{i}].loras[{j}].asset", f"no uploaded LoRA with sha256 {use.path}; upload it to /loras first"
            )
        bases = (asset.info or {}).get("bases", [])
        if resolved.spec.name not in bases:
            raise InvalidRequest(
                f"takes[{i}].loras[{j}].asset",
                f"the LoRA {asset.filename} was made for {', '.join(bases) or 'another model'}, not "
                f"{resolved.spec.name}; pick a checkpoint it fits or another LoRA",
            )
    params["mode"] = resolved.mode  # recorded: unset, it follows from the inputs given
    for kind in ("image", "audio"):
        sha = take.get(kind)
        if sha is not None and kind[0].upper() in resolved.mode:
            asset = assets.get(sha)
            if asset is None or asset.kind != kind:
                raise InvalidRequest(
                    f"takes[{i}].{kind}", f"no uploaded {kind} with sha256 {sha}; upload it to /assets first"
                )
    pool = pool_of(resolved.spec.name, settings)
    if take.get("pool") and take["pool"] != pool:
        # the explore pool may hold the hero checkpoint too (a 17B draft on one large GPU)
        if not (take["pool"] == "explore" and settings.explore_checkpoint == resolved.spec.name):
            raise InvalidRequest(
                f"takes[{i}].pool", f"checkpoint {resolved.spec.name} renders on the {pool} pool, not {take['pool']}"
            )
        pool = take["pool"]
    priority = take.get("priority", 0)
    if not isinstance(priority, int) or not -1000 <= priority <= 1000:
        raise InvalidRequest(f"takes[{i}].priority", "must be an integer from -1000 to 1000")
    return {
        "checkpoint": resolved.spec.name,
        "pool": pool,
        "params": params,
        "priority": priority,
        "loras": [{"sha256": use.path, "strength": use.strength} for use in resolved.loras] or None,
        "preset": take.get("preset"),
        "image_sha256": take.get("image") if "I" in resolved.mode else None,
        "audio_sha256": take.get("audio") if "A" in resolved.mode else None,
    }


def body_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def find_replay(session: Session, producer: str, key: str | None, body: dict) -> Batch | None:
    """The batch an earlier request with this Idempotency-Key created, if any."""
    if not key:
        return None
    batch = session.execute(
        select(Batch).where(Batch.producer == producer, Batch.idempotency_key == key)
    ).scalar_one_or_none()
    if batch is not None and batch.request.get("_digest") != body_digest(body):
        raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for a different batch; use a new key")
    return batch


def submit(
    session: Session, body: dict, producer: str, settings: Settings, idempotency_key: str | None = None
) -> tuple[Batch, bool]:
    """The batch a request makes, committed: (batch, created). Replaying an Idempotency-Key
    answers with the batch it made, even when the two requests race."""
    replay = find_replay(session, producer, idempotency_key, body)
    if replay is not None:
        return replay, False
    try:
        batch = create_batch(session, body, producer, settings, idempotency_key)
        session.commit()
        return batch, True
    except IntegrityError:
        session.rollback()  # a concurrent request with the same key committed first
        replay = find_replay(session, producer, idempotency_key, body)
        if replay is None:
            raise
        return replay, False


def plan(session: Session, body: dict, settings: Settings) -> list[dict]:
    """The Take rows' values a batch body makes, every take validated and its consent decided
    (farm.consent); nothing is written."""
    takes = expand(body, settings)
    wanted = {t.get(k) for t in takes for k in ("image", "audio") if t.get(k)}
    wanted |= {use.get("asset") for t in takes for use in t.get("loras") or []}
    assets = (
        {a.sha256: a for a in session.execute(select(Asset).where(Asset.sha256.in_(wanted))).scalars()}
        if wanted
        else {}
    )
    rows = [_validate(i, t, assets, settings) for i, t in enumerate(takes)]
    return consent.decide(session, rows, settings)  # refused takes name their input and what is missing


def create_batch(
    session: Session,
    body: dict,
    producer: str,
    settings: Settings,
    idempotency_key: str | None = None,
    parent_ids: list[str] | None = None,
) -> Batch:
    rows = plan(session, body, settings)
    project_name = body.get("project") or "default"
    # a project first named by two submits at once: one row, both use it
    session.execute(db.insert(session, Project).values(id=new_id(), name=project_name, created_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["name"]))  # fmt: skip
    project_id = session.execute(select(Project.id).where(Project.name == project_name)).scalar_one()
    batch = Batch(
        project_id=project_id,
        name=body.get("name") or f"batch of {len(rows)}",
        producer=producer,
        request={**body, "_digest": body_digest(body)},
        idempotency_key=idempotency_key,
    )
    session.add(batch)
    session.flush()
    now = utcnow()
    # a microsecond apart: submission order is the age order the release loop keeps
    values = [
        {
            "id": new_id(),
            "batch_id": batch.id,
            "producer": producer,
            "state": TakeState.queued,
            "max_attempts": settings.max_attempts,
            "created_at": now + timedelta(microseconds=i),
            "updated_at": now,
            "parent_id": parent_ids[i] if parent_ids else None,
            **row,
        }
        for i, row in enumerate(rows)
    ]
    session.execute(insert(Take), values)  # one round trip for thousands of takes
    return batch


def load_yaml(text: str | bytes) -> Any:
    """A YAML batch file (an upload to /batches/file, the file of `farm submit`) read safely
    and at a bounded cost: anchors and aliases are refused (a 1 KB "billion laughs" file of
    aliases expands to gigabytes), and so is a file of more than MAX_YAML_NODES values or
    nested deeper than MAX_YAML_DEPTH. Its events are checked in one streaming pass before
    anything is built. Bad syntax is a yaml.YAMLError; what is refused, InvalidRequest("file")."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where present: the same values, faster
    nodes = depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise InvalidRequest("file", "YAML anchors and aliases are not accepted; write the takes out")
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise InvalidRequest(
                    "file", f"more than {MAX_YAML_NODES} YAML values; split the batch, use a sweep or send a CSV"
                )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise InvalidRequest("file", f"lists and mappings nested over {MAX_YAML_DEPTH} deep; a batch needs 5")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(text, Loader=loader)


def parse_batch_file(filename: str, data: bytes, params: tuple[Param, ...] = PARAMS) -> dict:
    """A batch body from an uploaded file: YAML (the `farm submit` format) or CSV (a header
    row of take fields, then one take per row; empty cells fall back to the defaults). A
    render parameter's column is read as its type; the API schema checks the other fields."""
    import csv
    import io

    import yaml

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("file", "not UTF-8 text; save the CSV or YAML as UTF-8") from None
    if filename.lower().endswith(".csv"):
        rows = list(islice(csv.DictReader(io.StringIO(text)), MAX_TAKES + 1))
        if len(rows) > MAX_TAKES:
            raise InvalidRequest("file", f"more than {MAX_TAKES} rows; split it into batches of at most {MAX_TAKES}")
        if not rows:
            raise InvalidRequest(
                "file", "the CSV has no rows; put the field names (prompt, seed, ...) on the first line"
            )
        types = {p.name: p.type for p in params}
        takes = []
        for i, row in enumerate(rows):
            take = {}
            for key, value in row.items():
                if key is None or value is None or value.strip() == "":
                    continue
                key, value = key.strip(), value.strip()
                try:
                    take[key] = types.get(key, str)(value)
                except ValueError:
                    raise InvalidRequest(f"file: row {i + 2}, {key}", f"{value!r} is not a number") from None
            takes.append(take)
        return {"takes": takes}
    try:
        body = load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest("file", f"not valid YAML ({str(exc).splitlines()[0]}); or send a .csv") from None
    if not isinstance(body, dict):
        raise InvalidRequest("file", "expected a mapping with `takes` or `sweep` (see examples/batch.yaml)")
    body.pop("api", None)
    return body


@dataclass(frozen=True)
class Summary:
    """A batch as lists show it: its project, its takes by state, its take ids if asked."""

    project: str
    counts: dict[TakeState, int]
    take_ids: list[str] | None

    @property
    def finished(self) -> bool:
        return all(state in states.FINISHED for state, n in self.counts.items() if n)


def summaries(session: Session, found: list[Batch], with_take_ids: bool = True) -> dict[str, Summary]:
    """Summaries of many batches in three queries, whatever their number."""
    ids = [b.id for b in found]
    counts = states.counts(session, Take.batch_id, ids)
    take_ids: dict[str, list[str]] = {i: [] for i in ids}
    if with_take_ids:
        rows = session.execute(
            select(Take.batch_id, Take.id).where(Take.batch_id.in_(ids)).order_by(Take.created_at, Take.id)
        )
        for batch_id, take_id in rows:
            take_ids[batch_id].append(take_id)
    wanted = {b.project_id for b in found}
    projects = {i: name for i, name in session.execute(select(Project.id, Project.name).where(Project.id.in_(wanted)))}
    return {
        b.id: Summary(projects.get(b.project_id, ""), counts[b.id], take_ids[b.id] if with_take_ids else None)
        for b in found
    }


def summary(session: Session, batch: Batch, with_take_ids: bool = True) -> Summary:
    return summaries(session, [batch], with_take_ids)[batch.id]


def recent(session: Session, producer: str | None, limit: int, project: str | None = None) -> list[Batch]:
    """Batches, newest first; of one producer or project (its name, any case)."""
    stmt = select(Batch).order_by(Batch.created_at.desc()).limit(limit)
    if producer:
        stmt = stmt.where(Batch.producer == producer)
    if project:
        named = select(Project.id).where(func.lower(Project.name) == project.strip().lower())
        stmt = stmt.where(Batch.project_id.in_(named))
    return list(session.execute(stmt).scalars())


def get(session: Session, batch_id: str) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found")
    return batch


def queued_rows(session: Session, batch_id: str) -> list[dict]:
    """The batch's queued takes as plan() makes them (what capacity and audio_fit read)."""
    columns = (Take.pool, Take.checkpoint, Take.params, Take.image_sha256, Take.audio_sha256)
    rows = session.execute(select(*columns).where(Take.batch_id == batch_id, Take.state == TakeState.queued))
    return [dict(row._mapping) for row in rows]


MAX_MEDIA = 100  #: files uploaded together with one batch file
MIN_PREFIX = 6  #: hex characters of a sha256 that may name an uploaded asset (if unique)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(rf"[0-9a-fA-F]{{{MIN_PREFIX},63}}")


def resolve_media(session: Session, body: dict, named: dict[str, Asset]) -> dict:
    """A batch file's images and audio, named by a file uploaded with it (its base name: the
    README's `media/portrait.png` is `portrait.png`) or by a unique sha256 prefix -> their sha256s."""

    def one(where: str, kind: str, value: Any) -> Any:
        if not isinstance(value, str) or _SHA256.fullmatch(value):
            return value
        asset = named.get(PurePath(value.replace("\\", "/")).name)
        if asset is not None:
            if asset.kind != kind:
                raise InvalidRequest(where, f"{value} is {asset.kind}, not {kind}; name an {kind} file here")
            return asset.sha256
        if _PREFIX.fullmatch(value):
            found = session.execute(
                select(Asset.sha256).where(Asset.kind == kind, Asset.sha256.startswith(value.lower())).limit(2)
            ).scalars()
            match = list(found)
            if len(match) == 1:
                return match[0]
            if match:
                raise InvalidRequest(
                    where, f"{value} starts the sha256 of more than one uploaded {kind}; give more of it"
                )
        files = ", ".join(sorted(named)) or "none"
        raise InvalidRequest(
            where,
            f"{value!r}: no {kind} of that name came with the batch file (its media: {files}) and no uploaded "
            f"{kind}'s sha256 starts with it; add the file to the upload, or give its sha256",
        )

    def take(where: str, fields: Any) -> Any:
        if not isinstance(fields, dict):
            return fields
        return {k: one(f"{where}.{k}", k, v) if k in ("image", "audio") else v for k, v in fields.items()}

    out = dict(body)
    if "defaults" in out:
        out["defaults"] = take("defaults", out["defaults"])
    if isinstance(out.get("takes"), list):
        out["takes"] = [take(f"takes[{i}]", t) for i, t in enumerate(out["takes"])]
    sweep = out.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("overrides"), list):
        rules = [
            {**r, "set": take(f"sweep.overrides[{i}].set", r.get("set"))} if isinstance(r, dict) else r
            for i, r in enumerate(sweep["overrides"])
        ]
        out["sweep"] = {**sweep, "overrides": rules}
    return out
