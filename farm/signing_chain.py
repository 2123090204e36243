"""The certificate chain that signs clips' content credentials (C2PA): the operator's own
(FARM_C2PA_CERT_CHAIN and FARM_C2PA_PRIVATE_KEY), or, with none configured, a local
development chain generated once under {data_dir}/c2pa-dev: a root CA and a signing
certificate whose names say they are for development only, never for delivery."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import FarmError
from .settings import Settings

DEV_ORG = "HuMo render farm DEVELOPMENT chain (not for delivery)"  #: the development chain's organisation
DEV_FOLDER = "c2pa-dev"
ALGS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


class SigningConfigError(FarmError):
    """The configured signing key or certificate chain cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Chain:
    cert_chain: bytes  #: PEM: the signing certificate, then its issuers
    private_key: bytes  #: PEM
    alg: str
    tsa_url: str | None
    development: bool  #: the generated local chain


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORG)]
    )


def _usage(*, sign: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=not sign, crl_sign=not sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def generate_dev_chain(folder: Path, days: int = 3650) -> None:
    """A root CA and a signing certificate (ECDSA P-256) in `folder`: root.pem, chain.pem
    (signer then root) and key.pem. C2PA refuses self-signed signers, hence the two."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.now(UTC) - timedelta(hours=1)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("HuMo farm development root"))
        .issuer_name(_name("HuMo farm development root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name("HuMo farm development signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "root.pem").write_bytes(pem(root))
    (tmp / "chain.pem").write_bytes(pem(signer) + pem(root))
    (tmp / "key.pem").write_bytes(key_pem)
    (tmp / "key.pem").chmod(0o600)
    try:
        tmp.rename(folder)  # whole or not at all: two processes generating at once keep one chain
    except OSError:
        shutil.rmtree(tmp)


def dev_folder(settings: Settings) -> Path:
    return settings.data_dir / DEV_FOLDER


def load_chain(settings: Settings) -> Chain:
    """The configured chain, or the development chain (generated on first use)."""
    if settings.c2pa_signing_alg not in ALGS:
        raise SigningConfigError(f"FARM_C2PA_SIGNING_ALG {settings.c2pa_signing_alg!r}; one of {', '.join(ALGS)}")
    if bool(settings.c2pa_cert_chain) != bool(settings.c2pa_private_key):
        raise SigningConfigError("set both FARM_C2PA_CERT_CHAIN and FARM_C2PA_PRIVATE_KEY, or neither (a dev chain)")
    if settings.c2pa_cert_chain and settings.c2pa_private_key:
        try:
            chain, key = settings.c2pa_cert_chain.read_bytes(), settings.c2pa_private_key.read_bytes()
        except OSError as exc:
            raise SigningConfigError(f"cannot read the signing chain or key: {exc}") from None
        return Chain(chain, key, settings.c2pa_signing_alg, settings.c2pa_tsa_url, development=False)
    folder = dev_folder(settings)
    if not folder.is_dir():
        generate_dev_chain(folder)
    return Chain(
        (folder / "chain.pem").read_bytes(), (folder / "key.pem").read_bytes(), "es256", None, development=True
    )


def trust_anchors(settings: Settings) -> str | None:
    """The root certificates (PEM) a reader trusts: configured, else the development root if present."""
    path = settings.c2pa_trust_anchors or dev_folder(settings) / "root.pem"
    return path.read_text() if path.is_file() else None
