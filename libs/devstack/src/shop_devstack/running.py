"""Which running stack `make story`, `make logs` and `make status` look at: the one in the
var dir given, else the one `make run` (or `make run-cluster`) keeps in `var/`, on the ports
`make run` reads from the same environment variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from shop_devstack.stack import (
    CLUSTER,
    SINGLE,
    Ports,
    Stack,
    Topology,
    repo_root,
    topology_from_env,
)


def default_var_dir(topology: Topology) -> Path:
    return repo_root() / ("var" if topology == SINGLE else f"var/{topology.name}")


def _running_topology() -> Topology:
    """SHOP_TOPOLOGY if set; else the topology whose default var dir has a running stack."""
    if "SHOP_TOPOLOGY" in os.environ:
        return topology_from_env()
    for topology in (SINGLE, CLUSTER):
        if (default_var_dir(topology) / "processes.json").exists():
            return topology
    return SINGLE


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=None,
        help="the stack's var dir (default: <repo>/var, or var/cluster for `make run-cluster`)",
    )


def locate(var_dir: Path | None) -> Stack:
    topology = _running_topology() if var_dir is None else topology_from_env()
    return Stack(
        (var_dir or default_var_dir(topology)).resolve(), Ports.from_env(), topology=topology
    )
