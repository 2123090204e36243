"""The explore pool's worker: one process per GPU, the pipeline loaded in this process."""

from __future__ import annotations

from farm.settings import Settings
from farm.storage import Storage
from models import Pipeline, load_pipeline

from .heartbeat import gpu_name
from .runtime import Runtime


class ExploreRuntime(Runtime):
    def __init__(self, settings: Settings, pool: str = "explore", storage: Storage | None = None):
        super().__init__(settings, pool, storage, gpu=gpu_name(settings.device))

    def load(self) -> Pipeline:
        return load_pipeline(self.checkpoint, self.settings.weights_dir, self.settings.device)
