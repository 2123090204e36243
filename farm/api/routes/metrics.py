"""Prometheus metrics (/metrics) and each pool's demand for autoscalers (/metrics/demand).

Both read the record on every request (farm.metrics) and, like every route but /healthz and the
sign-in, need a viewer: the API token of a viewer account made for the purpose
(`farm user create metrics --role viewer --no-password --token`), sent as a bearer token by
Prometheus (`authorization: {credentials_file: ...}`, or a ServiceMonitor's bearerTokenSecret)
and by KEDA's metrics-api trigger (`authModes: bearer` through a TriggerAuthentication).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ... import metrics
from ...tables import utcnow
from ..auth import Viewer

router = APIRouter(prefix="/metrics", tags=["ops"])


def _registry(app: FastAPI) -> CollectorRegistry:
    """One registry per app, holding the farm's collector (built on the first scrape)."""
    registry = getattr(app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics.FarmCollector(app.state.sessions, app.state.settings))
        app.state.metrics_registry = registry
    return registry


@router.get("", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def scrape(_user: Viewer, request: Request) -> Response:
    """The farm's figures in Prometheus' text format (OpenMetrics when the scraper asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(_registry(request.app)), media_type=content_type)


@router.get("/demand")
def demand(_user: Viewer, request: Request) -> dict[str, dict[str, int]]:
    """Per pool: takes that want a GPU now (queued + released + running), and its parts.
    KEDA's metrics-api trigger reads `<pool>.demand` and sizes the pool at one take per worker."""
    settings = request.app.state.settings
    with request.app.state.sessions() as session:
        figures = metrics.pools(session, utcnow(), settings.worker_timeout)
    return {
        p.pool: {
            "demand": p.demand,
            "queued": p.queued,
            "released": p.released,
            "running": p.running,
            "workers": p.workers,
            "slots": p.slots,
        }
        for p in figures
    }
