"""TLS for gRPC, one switch: which files a process shows and trusts, and credentials of them.

`SHOP_TLS=1` turns it on for every gRPC server and client of the shop: a server asks each
client for a certificate signed by the CA and refuses the call without one (mutual TLS); a
client checks the server's certificate against the same CA and shows its own. The files come
from one folder, `SHOP_TLS_DIR` (`make certs` fills it), and each can be pointed elsewhere by
its own variable. Plaintext stays the default. Files are read once, at start-up: a missing or
malformed one stops the process with a message naming its variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from shop_chassis.settings import Env, SettingsError

TLS_SWITCH = "SHOP_TLS"
TLS_DIR = "SHOP_TLS_DIR"
TLS_CA = "SHOP_TLS_CA"
CLIENT_CERT = "SHOP_TLS_CLIENT_CERT"
CLIENT_KEY = "SHOP_TLS_CLIENT_KEY"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """One process's side of mutual TLS: the CA it trusts, the certificate and key it shows."""

    ca: Path
    cert: Path
    key: Path
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def read(
        cls, ca: Path, cert: Path, key: Path, variables: tuple[str, str, str] = ("", "", "")
    ) -> TlsFiles:
        """Reads the three files; a SettingsError naming the file (and its variable, when
        `variables` names them) for one that is missing or not PEM."""
        ca_variable, cert_variable, key_variable = variables
        return cls(
            ca=ca,
            cert=cert,
            key=key,
            ca_pem=_read(ca, _CERTIFICATE, ca_variable),
            cert_pem=_read(cert, _CERTIFICATE, cert_variable),
            key_pem=_read(key, _PRIVATE_KEY, key_variable),
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """A server that refuses any client without a certificate signed by the CA."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """A client that trusts only servers certified by the CA and shows its certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )


def server_name_option(name: str) -> tuple[str, str]:
    """The channel option that makes a client check the server's certificate for `name`.

    Every certificate `make certs` issues names 127.0.0.1, so checking the address alone would
    accept any shop service; a multi-address target (`ipv4:a,b`) has no single host to check.
    """
    return ("grpc.ssl_target_name_override", name)


def tls_enabled(env: Env) -> bool:
    return env.flag(TLS_SWITCH, default=False)


def service_tls(env: Env, service: str, default_dir: Path) -> TlsFiles | None:
    """`service`'s files (<SERVICE>_TLS_CERT/_KEY, SHOP_TLS_CA); None when SHOP_TLS is off."""
    prefix = service.upper()
    return _files(env, service, f"{prefix}_TLS_CERT", f"{prefix}_TLS_KEY", default_dir)


def client_tls(env: Env, default_dir: Path) -> TlsFiles | None:
    """The files of a tool or a person (SHOP_TLS_CLIENT_CERT/_KEY); None when SHOP_TLS is off."""
    return _files(env, "client", CLIENT_CERT, CLIENT_KEY, default_dir)


def _files(
    env: Env, name: str, cert_variable: str, key_variable: str, default_dir: Path
) -> TlsFiles | None:
    if not tls_enabled(env):
        return None
    folder = Path(env.text(TLS_DIR, str(default_dir)))
    ca = _path(env, TLS_CA, folder / "ca.pem")
    cert = _path(env, cert_variable, folder / f"{name}.pem")
    key = _path(env, key_variable, folder / f"{name}-key.pem")

    def named(variable: str, path: Path) -> str:
        return variable if variable in env else f"{variable} (unset: ${TLS_DIR}/{path.name})"

    variables = (named(TLS_CA, ca), named(cert_variable, cert), named(key_variable, key))
    return TlsFiles.read(ca, cert, key, variables)


def files_in(folder: Path, name: str) -> TlsFiles:
    """`name`'s files as `make certs` lays them out: ca.pem, <name>.pem, <name>-key.pem."""
    folder = folder.resolve()
    return TlsFiles.read(folder / "ca.pem", folder / f"{name}.pem", folder / f"{name}-key.pem")


def _path(env: Env, variable: str, default: Path) -> Path:
    return Path(env.text(variable, str(default))).resolve()


_CERTIFICATE = (b"-----BEGIN CERTIFICATE-----", "a PEM certificate")
_PRIVATE_KEY = (b"PRIVATE KEY-----", "a PEM private key")


def _read(path: Path, kind: tuple[bytes, str], variable: str = "") -> bytes:
    """The file's bytes; a SettingsError naming `variable` when they cannot be used."""
    marker, what = kind
    named = f"{variable}: " if variable else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(
            f"{named}{path} does not exist; {TLS_SWITCH}=1 needs a CA and certificates:"
            " `make certs` makes them in var/certs"
        ) from None
    except OSError as exc:
        raise SettingsError(f"{named}cannot read {path}: {exc.strerror}") from None
    if marker not in data:
        raise SettingsError(f"{named}{path} is not {what}")
    return data
