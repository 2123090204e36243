"""Small builders and readers for the farm's and the workers' tests."""

from __future__ import annotations

from datetime import timedelta

from farm import batches
from farm.db import transaction
from farm.settings import Settings
from farm.tables import Asset, Batch, Take

from .services import wait_for


def make_batch(sessions, settings: Settings, takes: list[dict], producer: str = "ana", **body) -> list[str]:
    with transaction(sessions) as session:
        batch = batches.create_batch(session, {"takes": takes, **body}, producer, settings)
        session.flush()
        return [t.id for t in session.query(Take).filter(Take.batch_id == batch.id).order_by(Take.created_at)]


def age(sessions, take_id: str, seconds: float) -> None:
    """Move a take's creation time into the past (the release order's age)."""
    with transaction(sessions) as session:
        take = session.get(Take, take_id)
        take.created_at = take.created_at - timedelta(seconds=seconds)


def state(sessions, take_id: str) -> str:
    with sessions() as session:
        return session.get(Take, take_id).state.value


def batch_of(sessions, batch_id: str) -> Batch:
    with sessions() as session:
        return session.get(Batch, batch_id)


def upload(client, path):
    with open(path, "rb") as f:
        return client.post("/assets", files={"file": (path.name, f)})


def assets(client, media):
    """The test image and audio uploaded: their sha256s."""
    return upload(client, media["image"]).json()["sha256"], upload(client, media["audio"]).json()["sha256"]


def take_state(client, take_id):
    return client.get(f"/takes/{take_id}").json()


def wait_done(client, take_ids, timeout=120):
    def all_finished():
        takes = [take_state(client, t) for t in take_ids]
        return takes if all(t["state"] in ("done", "failed", "canceled") for t in takes) else None

    return wait_for(all_finished, timeout, f"takes {take_ids} to finish")


def missing_asset(sessions, sha256: str, kind: str = "image") -> None:
    """An asset row whose object is not in the store (lost, or never there)."""
    with transaction(sessions) as session:
        session.add(Asset(sha256=sha256, kind=kind, size=1, key=f"assets/{kind}/{sha256[:2]}/gone",
                          filename="gone.png", media_format="png"))  # fmt: skip
