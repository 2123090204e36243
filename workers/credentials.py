"""Signing a clip's content credentials (C2PA), on the finisher thread, off the GPU's path.

What the credentials hold is described in farm/credentials.py; the chain comes from
farm/signing_chain.py (the operator's, or the local development one, which the assertion
names as such). The chain is checked when the worker starts: a key that cannot sign stops
the worker at once rather than failing every take.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from farm import __version__
from farm.credentials import ASSERTION, SOURCE_TYPE
from farm.settings import Settings
from farm.signing_chain import Chain, SigningConfigError, load_chain

log = logging.getLogger(__name__)


class ClipSigner:
    def __init__(self, settings: Settings):
        self.chain: Chain = load_chain(settings)
        try:
            self._signer().close()  # a key or chain the library refuses stops the worker here, named
        except Exception as exc:
            raise SigningConfigError(f"the C2PA signing key or chain cannot sign: {exc}") from None
        if self.chain.development:
            log.warning("content credentials are signed with the local DEVELOPMENT chain; set FARM_C2PA_CERT_CHAIN")

    def _signer(self):
        import c2pa

        info = c2pa.C2paSignerInfo(
            self.chain.alg.encode(), self.chain.cert_chain, self.chain.private_key,
            self.chain.tsa_url.encode() if self.chain.tsa_url else None,
        )  # fmt: skip
        return c2pa.Signer.from_info(info)

    def definition(
        self, take_id: str, manifest_sha256: str, consent: dict, checkpoint: str, checkpoint_sha256: str | None
    ) -> dict:
        """The C2PA manifest definition for one clip."""
        records = [
            {"input": kind, "id": r["id"], "sha256": r["sha256"]}
            for kind, found in sorted(consent.items())
            for r in found.get("records", [])
        ]
        agent = {"name": f"HuMo {checkpoint}", "version": (checkpoint_sha256 or "unknown")[:64]}
        take = {
            "take_id": take_id,
            "manifest_sha256": manifest_sha256,
            "consent_records": records,
            "inputs_without_record": sorted(k for k, found in consent.items() if not found.get("records")),
            "generator": {"checkpoint": checkpoint, "dit_sha256": checkpoint_sha256, "farm_version": __version__},
            "signed_with": "development chain: not for delivery" if self.chain.development else "operator chain",
        }
        return {
            "claim_generator_info": [{"name": "humo-farm", "version": __version__}],
            "title": f"take {take_id}",
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {"action": "c2pa.created", "digitalSourceType": SOURCE_TYPE, "softwareAgent": agent}
                        ]
                    },
                },
                {"label": ASSERTION, "data": take},
            ],
        }

    def sign(self, source: Path, dest: Path, definition: dict) -> float:
        """Write `source` signed to `dest`; the seconds it took."""
        import c2pa

        started = time.perf_counter()
        with self._signer() as signer, c2pa.Builder(definition) as builder:
            with open(source, "rb") as src, open(dest, "w+b") as out:
                builder.sign(signer, "video/mp4", src, out)
        return time.perf_counter() - started
