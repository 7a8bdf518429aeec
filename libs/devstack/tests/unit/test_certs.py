"""`make certs`: the local CA and the certificates it issues, checked the way a TLS peer would
(cryptography's path validation), and what a second run keeps or makes anew."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from shop_devstack.certs import ensure_certs

SERVICES = ("inventory", "orders", "notifier")
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
ALL = ["ca", *SERVICES, "client"]


def certificate(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())


Host = x509.DNSName | x509.IPAddress


def verify_as_server(folder: Path, name: str, host: Host) -> None:
    store = Store([certificate(folder, "ca")])
    verifier = PolicyBuilder().store(store).time(NOW).build_server_verifier(host)
    verifier.verify(certificate(folder, name), [])


def verify_as_client(folder: Path, name: str, at: datetime.datetime = NOW) -> None:
    store = Store([certificate(folder, "ca")])
    verifier = PolicyBuilder().store(store).time(at).build_client_verifier()
    verifier.verify(certificate(folder, name), [])


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    assert ensure_certs(tmp_path, SERVICES, now=NOW) == ALL
    return tmp_path


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "host",
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))],
    ids=["localhost", "127.0.0.1"],
)
def test_each_service_certificate_is_valid_for_its_name_localhost_and_127_0_0_1(
    certs: Path, service: str, host: Host
) -> None:
    verify_as_server(certs, service, x509.DNSName(service))
    verify_as_server(certs, service, host)


def test_a_service_certificate_is_not_valid_for_another_services_name(certs: Path) -> None:
    with pytest.raises(VerificationError):
        verify_as_server(certs, "notifier", x509.DNSName("inventory"))


@pytest.mark.parametrize("name", [*SERVICES, "client"])
def test_services_and_the_client_can_show_their_certificate_as_a_client(
    certs: Path, name: str
) -> None:
    verify_as_client(certs, name)


def test_the_client_certificate_cannot_serve(certs: Path) -> None:
    usages = certificate(certs, "client").extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    assert list(usages.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(VerificationError):
        verify_as_server(certs, "client", x509.DNSName("localhost"))


def test_service_certificates_serve_and_call(certs: Path) -> None:
    for service in SERVICES:
        usages = certificate(certs, service).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        )
        assert list(usages.value) == [
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ]


def test_leaf_keys_sign_and_the_ca_signs_only_certificates(certs: Path) -> None:
    ca = certificate(certs, "ca").extensions
    ca_usage = ca.get_extension_for_class(x509.KeyUsage).value
    constraints = ca.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert (ca_usage.key_cert_sign, ca_usage.crl_sign, ca_usage.digital_signature) == (
        True,
        True,
        False,
    )
    for name in [*SERVICES, "client"]:
        extensions = certificate(certs, name).extensions
        usage = extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical
        assert (usage.value.digital_signature, usage.value.key_cert_sign) == (True, False)
        assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_certificates_are_valid_from_now_for_a_year_and_the_ca_for_ten(certs: Path) -> None:
    for name in [*SERVICES, "client"]:
        leaf = certificate(certs, name)
        assert leaf.not_valid_before_utc <= NOW
        assert leaf.not_valid_after_utc - NOW == datetime.timedelta(days=365)
    assert certificate(certs, "ca").not_valid_after_utc - NOW == datetime.timedelta(days=3650)
    with pytest.raises(VerificationError):  # and a TLS peer refuses them after that
        verify_as_client(certs, "client", at=NOW + datetime.timedelta(days=366))


def test_each_key_matches_its_certificate_and_only_its_owner_can_read_it(certs: Path) -> None:
    for name in ALL:
        key_file = certs / f"{name}-key.pem"
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert key.public_key() == certificate(certs, name).public_key()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_running_again_keeps_every_certificate_that_is_still_good(certs: Path) -> None:
    before = {name: (certs / f"{name}.pem").read_bytes() for name in ALL}

    made = ensure_certs(certs, SERVICES, now=NOW + datetime.timedelta(days=300))

    assert made == []
    assert {name: (certs / f"{name}.pem").read_bytes() for name in ALL} == before


def test_certificates_with_less_than_a_month_left_are_made_anew_by_the_same_ca(
    certs: Path,
) -> None:
    ca = (certs / "ca.pem").read_bytes()
    later = NOW + datetime.timedelta(days=340)

    made = ensure_certs(certs, SERVICES, now=later)

    assert made == [*SERVICES, "client"]
    assert (certs / "ca.pem").read_bytes() == ca
    verify_as_client(certs, "orders", at=later + datetime.timedelta(days=300))


def test_a_certificate_from_another_ca_is_made_anew(
    certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    ensure_certs(other, SERVICES, now=NOW)
    for suffix in (".pem", "-key.pem"):
        (certs / f"orders{suffix}").write_bytes((other / f"orders{suffix}").read_bytes())

    made = ensure_certs(certs, SERVICES, now=NOW)

    assert made == ["orders"]
    verify_as_client(certs, "orders")


def test_a_new_ca_means_new_certificates_for_everyone(certs: Path) -> None:
    (certs / "ca-key.pem").unlink()

    made = ensure_certs(certs, SERVICES, now=NOW)

    assert made == ALL
    for name in [*SERVICES, "client"]:
        verify_as_client(certs, name)
