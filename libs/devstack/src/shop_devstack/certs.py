"""`make certs`: a local CA and the certificates `SHOP_TLS=1` needs, made with `cryptography`.

The folder (`var/certs/`, git-ignored; `SHOP_TLS_DIR` moves it) holds

    ca.pem, ca-key.pem                the CA; only this module signs with its key
    <service>.pem, <service>-key.pem  one per service, for serving and for calling other services
                                      (server and client use), naming <service>, localhost and
                                      127.0.0.1: valid for every replica on this machine
    client.pem, client-key.pem        for tools and people (grpcurl, ghz, make demo): client use

Keys are ECDSA P-256, readable by their owner only. Running it again keeps what is still good
(signed by this CA, the right names and uses, more than RENEW_BEFORE left), so clients holding
the files keep working; anything else is made anew, and a new CA means new certificates for all.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid slightly before it is made
CLIENT = "client"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    name: str
    certificate: x509.Certificate
    key: Key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shop (local development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(now: datetime.datetime) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    subject = _name("shop local CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued("ca", certificate, key)


def subject_alternative_names(name: str) -> list[x509.GeneralName]:
    """What a service's certificate is valid for: its name, localhost and 127.0.0.1. The
    client's names only itself (its usage forbids serving; verifiers want a name)."""
    if name == CLIENT:
        return [x509.DNSName(CLIENT)]
    return [x509.DNSName(name), x509.DNSName("localhost"), x509.IPAddress(LOOPBACK)]


def extended_key_usages(name: str) -> list[x509.ObjectIdentifier]:
    if name == CLIENT:
        return [ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def issue(ca: Issued, name: str, now: datetime.datetime) -> Issued:
    """A certificate for `name` signed by `ca`: a service's (server and client) or `client`."""
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"shop {name}"))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # ECDSA signs the handshake; there is no encipherment
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(extended_key_usages(name)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(subject_alternative_names(name)), critical=False)
    )
    return Issued(name, builder.sign(ca.key, hashes.SHA256()), key)


def _write(folder: Path, issued: Issued) -> None:
    """<name>.pem and <name>-key.pem, the key readable by its owner only; each file appears
    whole (written beside it, then renamed), so a reader never sees half of one."""
    key_pem = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = issued.certificate.public_bytes(serialization.Encoding.PEM)
    for path, data, mode in (
        (folder / f"{issued.name}-key.pem", key_pem, 0o600),
        (folder / f"{issued.name}.pem", cert_pem, 0o644),
    ):
        partial = path.with_name(f".{path.name}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        os.chmod(partial, mode)  # whatever the umask
        partial.replace(path)


def _load(folder: Path, name: str) -> Issued | None:
    """What `folder` holds for `name`, or None when a file is missing or unreadable."""
    try:
        certificate = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (folder / f"{name}-key.pem").read_bytes(), password=None
        )
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return Issued(name, certificate, key)


def _lasts(certificate: x509.Certificate, now: datetime.datetime) -> bool:
    return (
        certificate.not_valid_before_utc <= now
        and certificate.not_valid_after_utc - now > RENEW_BEFORE
    )


def _matches(issued: Issued) -> bool:
    return issued.certificate.public_key() == issued.key.public_key()


def _usable_ca(ca: Issued, now: datetime.datetime) -> bool:
    try:
        constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca and _matches(ca) and _lasts(ca.certificate, now)


def _usable_leaf(leaf: Issued, ca: Issued, now: datetime.datetime) -> bool:
    certificate = leaf.certificate
    try:
        certificate.verify_directly_issued_by(ca.certificate)
        extensions = certificate.extensions
        usages = list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    return (
        _matches(leaf)
        and _lasts(certificate, now)
        and usages == extended_key_usages(leaf.name)
        and names == subject_alternative_names(leaf.name)
    )


def ensure_certs(
    folder: Path, services: Sequence[str], now: datetime.datetime | None = None
) -> list[str]:
    """Makes whatever `folder` lacks for `services` and a client; the names (re)made."""
    now = now or datetime.datetime.now(datetime.UTC)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    ca = _load(folder, "ca")
    if ca is None or not _usable_ca(ca, now):
        ca = make_ca(now)
        _write(folder, ca)
        made.append("ca")
    for name in [*services, CLIENT]:
        leaf = _load(folder, name)
        if leaf is None or not _usable_leaf(leaf, ca, now):
            _write(folder, issue(ca, name, now))
            made.append(name)
    return made


def describe(folder: Path, made: Sequence[str]) -> str:
    """One line for the terminal: what was made, and until when the CA lasts."""
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    until = f"the CA is valid until {ca.not_valid_after_utc:%Y-%m-%d}"
    if not made:
        return f"{folder}: every certificate is present and valid; nothing to do ({until})"
    return f"{folder}: made {', '.join(f'{name}.pem' for name in made)} ({until})"
