"""LoRA files on a worker's disk: fetched once per sha256, kept while they fit.

A LoRA is large (a rank-64 LoRA of the 17B is ~1.2 GB) and a batch uses the same few for
every take, so a worker keeps them under {data_dir}/loras by content hash, verified when
fetched, and drops the least recently used when the folder passes `lora_cache_bytes`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from farm.errors import ObjectMissing
from farm.storage import Storage
from farm.tables import Asset
from models import InputError
from models.probe import file_sha256


class LoraCache:
    def __init__(self, storage: Storage, folder: Path, max_bytes: int):
        self.storage, self.folder, self.max_bytes = storage, folder, max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, asset: Asset) -> Path:
        """The LoRA's file on this disk, fetched from the store when not here yet."""
        path = self.folder / f"{asset.sha256}.safetensors"
        if path.exists() and path.stat().st_size == asset.size:
            os.utime(path)  # most recently used
            return path
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            part = Path(tmp) / "part"
            try:
                self.storage.get_file(asset.key, part)
            except ObjectMissing:  # no retry brings it back: the take fails once, saying how to mend it
                raise InputError(
                    "loras",
                    f"the uploaded LoRA {asset.filename} ({asset.sha256[:12]}) is missing from the store; upload "
                    "the same file again (it is repaired in place), then retry the take",
                ) from None
            if file_sha256(part) != asset.sha256:
                raise OSError(f"LoRA {asset.sha256[:12]} arrived corrupted from the store")  # retried
            part.replace(path)  # whole or not at all: a reader never sees half a file
        self._trim(keep=path)
        return path

    def _trim(self, keep: Path) -> None:
        files = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for old in files:
            if total <= self.max_bytes:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)
