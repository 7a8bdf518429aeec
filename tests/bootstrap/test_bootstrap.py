"""deploy/bootstrap.sh's functions, sourced and run against stub commands: nothing is
installed and nothing outside a temporary folder is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from shop_devstack.stack import repo_root

BOOTSTRAP = repo_root() / "deploy" / "bootstrap.sh"


def stub(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def apt_install(tmp_path: Path, apt_get: str) -> subprocess.CompletedProcess[str]:
    """Run `apt_install cowsay` as root would, with `apt_get` as apt-get's script and the
    daemon blocker (policy-rc.d) in tmp_path."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    stub(stubs, "apt-get", apt_get)
    stub(stubs, "id", "echo 0")  # apt_install insists on root
    return subprocess.run(
        [
            "bash",
            "-c",
            'source "$1" && apt_install cowsay "install it by hand"',
            "bash",
            str(BOOTSTRAP),
        ],
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SHOP_CACHE": str(tmp_path / "cache"),
            "SHOP_POLICY_RC_D": str(tmp_path / "policy-rc.d"),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# apt-get notes whether the blocker is in place while it runs, so a test sees it was there.
RECORDING = 'echo "$* blocked=$(test -x "$SHOP_POLICY_RC_D" && echo yes)" >>"$HOME/apt.log"'


@pytest.mark.parametrize("failing", ["update", "install"])
def test_a_failed_apt_get_still_removes_the_daemon_blocker(tmp_path: Path, failing: str) -> None:
    done = apt_install(tmp_path, f'{RECORDING}\ncase "$1" in {failing}) exit 100 ;; esac')

    assert done.returncode != 0
    assert f"{failing} " in (tmp_path / "apt.log").read_text()
    assert "blocked=yes" in (tmp_path / "apt.log").read_text()
    assert not (tmp_path / "policy-rc.d").exists()


def test_an_installed_package_leaves_no_daemon_blocker_behind(tmp_path: Path) -> None:
    done = apt_install(tmp_path, RECORDING)

    assert done.returncode == 0, done.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log == [
        "update -qq blocked=yes",
        "install -y -qq --no-install-recommends cowsay blocked=yes",
    ]
    assert not (tmp_path / "policy-rc.d").exists()


def test_a_daemon_blocker_that_was_there_before_is_left_alone(tmp_path: Path) -> None:
    theirs = tmp_path / "policy-rc.d"
    theirs.write_text("#!/bin/sh\nexit 0\n")
    theirs.chmod(0o755)

    done = apt_install(tmp_path, "exit 100")

    assert done.returncode != 0
    assert theirs.read_text() == "#!/bin/sh\nexit 0\n"
