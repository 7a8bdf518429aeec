"""SHOP_TLS and the files it needs: off by default, read from one folder or one variable per
file, and a missing or malformed file stops the service naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop_chassis.settings import ServiceSettings, SettingsError
from shop_devstack.certs import ensure_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    ensure_certs(folder, ["orders", "inventory"])
    return folder


def test_tls_is_off_unless_shop_tls_is_set(certs: Path) -> None:
    assert ServiceSettings.from_env("orders", {}).tls is None
    assert ServiceSettings.from_env("orders", {"SHOP_TLS": "0"}).tls is None


def test_shop_tls_reads_the_services_certificate_and_the_ca_from_the_certificates_folder(
    certs: Path,
) -> None:
    tls = ServiceSettings.from_env("orders", {"SHOP_TLS": "1", "SHOP_TLS_DIR": str(certs)}).tls

    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == (
        certs / "ca.pem",
        certs / "orders.pem",
        certs / "orders-key.pem",
    )
    assert tls.cert_pem == (certs / "orders.pem").read_bytes()


def test_the_certificates_folder_defaults_to_certs_in_the_var_folder(tmp_path: Path) -> None:
    ensure_certs(tmp_path / "certs", ["notifier"])

    tls = ServiceSettings.from_env("notifier", {"SHOP_TLS": "1", "SHOP_VAR_DIR": str(tmp_path)}).tls

    assert tls is not None
    assert tls.cert == tmp_path / "certs" / "notifier.pem"


def test_each_file_can_be_pointed_elsewhere_by_its_own_variable(certs: Path) -> None:
    environ = {
        "SHOP_TLS": "true",
        "SHOP_TLS_DIR": "/nowhere",
        "SHOP_TLS_CA": str(certs / "ca.pem"),
        "INVENTORY_TLS_CERT": str(certs / "orders.pem"),
        "INVENTORY_TLS_KEY": str(certs / "orders-key.pem"),
    }

    tls = ServiceSettings.from_env("inventory", environ).tls

    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == (
        certs / "ca.pem",
        certs / "orders.pem",
        certs / "orders-key.pem",
    )


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("ca.pem", "SHOP_TLS_CA"),
        ("orders.pem", "ORDERS_TLS_CERT"),
        ("orders-key.pem", "ORDERS_TLS_KEY"),
    ],
)
def test_a_missing_file_stops_the_service_naming_its_variable_and_make_certs(
    certs: Path, tmp_path: Path, missing: str, named: str
) -> None:
    for path in certs.iterdir():
        if path.name != missing:
            (tmp_path / path.name).write_bytes(path.read_bytes())

    with pytest.raises(SettingsError) as error:
        ServiceSettings.from_env("orders", {"SHOP_TLS": "1", "SHOP_TLS_DIR": str(tmp_path)})

    message = str(error.value)
    assert message.startswith(named)
    assert f"{tmp_path / missing} does not exist" in message
    assert "make certs" in message


def test_a_key_that_is_not_pem_is_refused_naming_its_variable(certs: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "orders-key.der"
    garbage.write_bytes(b"\x30\x82\x01\x0a")
    environ = {"SHOP_TLS": "1", "SHOP_TLS_DIR": str(certs), "ORDERS_TLS_KEY": str(garbage)}

    with pytest.raises(SettingsError, match=f"^ORDERS_TLS_KEY: {garbage} is not a PEM private key"):
        ServiceSettings.from_env("orders", environ)
