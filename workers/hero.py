"""The hero pool's worker: one supervisor per host drives a persistent group of N ranks
(workers/hero_group.py) that hold HuMo-17B split by sequence.

It is a Runtime (workers/runtime.py) with the group in place of the in-process pipeline: the
same claim, progress, cancel, finisher thread, manifest and failure handling. What differs:
a group failure (a rank died, a take passed its deadline) has already killed and respawned
the group, and the take is retried; GPU seconds count every GPU of the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from farm.settings import Settings
from farm.storage import Storage
from models import OnPreview, OnStep, OnWindow, RenderRequest, RenderResult
from models.checkpoints import files_sha256, open_checkpoint
from models.request import ResolvedRequest
from models.specs import get_spec
from models.weights import weights_dir

from .heartbeat import gpu_name
from .hero_group import RankGroup
from .runtime import Runtime

if TYPE_CHECKING:
    import torch


class GroupPipeline:
    """The rank group behind the two things the runtime asks of a pipeline."""

    def __init__(self, group: RankGroup, checkpoint: str, weights, deadline: float):
        self.group, self.checkpoint, self.weights, self.deadline = group, checkpoint, weights, deadline

    def render(
        self,
        request: RenderRequest | ResolvedRequest,
        on_step: OnStep,
        on_preview: OnPreview | None = None,
        *,
        resume: Sequence[torch.Tensor] = (),
        on_window: OnWindow | None = None,
    ) -> RenderResult:
        """on_preview is not called: the prediction lives on the rank processes (explore previews)."""
        return self.group.render(request, on_step, timeout=self.deadline, resume=resume, on_window=on_window)

    @cached_property
    def checkpoint_digest(self) -> str:
        files = open_checkpoint(weights_dir(self.checkpoint, self.weights) / get_spec(self.checkpoint).files.dit).files
        return files_sha256(files)


class HeroRuntime(Runtime):
    def __init__(self, settings: Settings, storage: Storage | None = None):
        n = settings.hero_gpus
        super().__init__(settings, "hero", storage, gpu=f"{n}x {gpu_name(settings.device)}", gpus=n)
        import torch

        # a hung collective never reports a step: the group's own deadline ends the take
        self.group = RankGroup(
            self.checkpoint,
            settings.weights_dir,
            n,
            device=settings.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            take_timeout=settings.render_time_limit,
        )

    def load(self) -> GroupPipeline:
        self.group.start()
        return GroupPipeline(self.group, self.checkpoint, self.settings.weights_dir, self.settings.render_time_limit)

    def run(self, take_id: str) -> str:
        # a group respawned after a failure reloads here, before the take is claimed: the
        # reload is neither billed to the take nor watched by the stall watchdog
        self.group.start()
        return super().run(take_id)

    def stop(self) -> None:
        super().stop()
        self.group.close()
