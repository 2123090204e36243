"""Content credentials (C2PA) on the farm's clips: what they hold and how they are read.

Every clip is signed (workers/credentials.py) with a `c2pa.created` action of digital source
type trainedAlgorithmicMedia by the HuMo checkpoint, and an assertion of ours (ASSERTION):
the take id, the manifest's sha256 (`manifest_digest`) and the consent records' hashes. The
manifest records the signed clip's own hash in `outputs`, so the digest leaves `outputs`
out: the clip names its manifest, the manifest names its clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings
from .signing_chain import DEV_ORG, trust_anchors

ASSERTION = "org.humo-farm.take"  #: our assertion's label
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MAX_CLIP_BYTES = 2 * 1024**3  #: the largest clip the take page reads credentials from (read from disk)


def manifest_digest(manifest: dict) -> str:
    """The sha256 the clip's credentials carry: of the manifest without its `outputs`, as
    canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in manifest.items() if k != "outputs"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Credentials:
    """A clip's credentials as read and validated."""

    state: str  #: Trusted, Valid (signature good, signer not in the trust list), Invalid, or none
    failures: list[str] = field(default_factory=list)  #: validation failures: "code: explanation"
    signer: dict = field(default_factory=dict)  #: issuer, common name, algorithm
    development: bool = False  #: signed by the farm's local development chain
    generator: list = field(default_factory=list)  #: claim_generator_info
    actions: list = field(default_factory=list)
    take: dict | None = None  #: our assertion
    manifest_matches: bool | None = None  #: our assertion's manifest hash = the stored manifest's (None: not checked)

    @property
    def ok(self) -> bool:
        return self.state in ("Trusted", "Valid") and self.take is not None and self.manifest_matches is not False


def read(clip: Path, settings: Settings, mime: str = "video/mp4", manifest: dict | None = None) -> Credentials:
    """Read and validate a clip's credentials (with `manifest`: check our assertion's hash of it)."""
    import c2pa

    anchors = trust_anchors(settings)
    context = None
    if anchors:
        context = c2pa.Context(c2pa.Settings.from_dict({"verify": {"verify_trust": True},
                                                        "trust": {"trust_anchors": anchors}}))  # fmt: skip
    with open(clip, "rb") as stream:  # streamed: a clip is never held whole in memory
        try:
            reader = c2pa.Reader.try_create(mime, stream, context=context)
        except c2pa.C2paError as exc:
            return Credentials(state="Invalid", failures=[f"unreadable: {exc}"])
        if reader is None:
            return Credentials(state="none", failures=["no content credentials in this file"])
        with reader:
            active = reader.get_active_manifest() or {}
            state = reader.get_validation_state() or "Invalid"
            results = (reader.get_validation_results() or {}).get("activeManifest") or {}
    failures = [f"{f.get('code')}: {f.get('explanation')}" for f in results.get("failure") or []]
    if state in ("Valid", "Trusted"):  # an untrusted signer is no failure of the clip's integrity
        failures = [f for f in failures if not f.startswith("signingCredential.untrusted")]
    assertions = {a.get("label"): a.get("data") for a in active.get("assertions") or []}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions") or []
    signer = active.get("signature_info") or {}
    take = assertions.get(ASSERTION)
    matches = None
    if manifest is not None and take is not None:
        matches = take.get("manifest_sha256") == manifest_digest(manifest)
    return Credentials(
        state=state,
        failures=failures,
        signer={k: signer.get(k) for k in ("issuer", "common_name", "alg", "time")},
        development=signer.get("issuer") == DEV_ORG,
        generator=active.get("claim_generator_info") or [],
        actions=actions,
        take=take,
        manifest_matches=matches,
    )
