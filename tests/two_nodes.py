"""A Ray cluster of two nodes on loopback, as two machines without a shared disk would be.

A keeper process (``python tests/two_nodes.py``) starts a head (the server's machine) and a
second node with Ray's ``ray.cluster_utils.Cluster``, each with its own temporary folder; the
second node's raylet and workers get their own, empty ``TL_DATA_DIR`` and the custom resource
``tl_remote`` that jobs ask for, so they train there. The cluster has a token of its own
(``RAY_AUTH_TOKEN``, token mode), which clients get through ``TwoNodes.env``.

Why not ``ray start``: Ray 2.60's ``ray start --address`` refuses to join a second node unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1``, and with it set rewrites 127.0.0.1 to the machine's
network address and listens on every interface (measured). ``Cluster`` starts the same
processes (GCS, raylets, object stores) with every socket on 127.0.0.1, as the issue asks.
Nothing here touches the test session's own Ray instance; the keeper shuts its cluster down
when its input closes, and any process left running from its folders is ended by id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REMOTE_RESOURCE = "tl_remote"


@dataclasses.dataclass(frozen=True)
class TwoNodes:
    """address: the head's GCS address; remote_data: the second node's data folder; remote_node: its
    Ray node id; env: what a client of this cluster adds to its environment (loopback mode, the token)."""

    address: str
    remote_data: Path
    remote_node: str
    env: dict[str, str]


def _end_strays(folders: list[Path]) -> None:
    """End any process still running from one of ``folders`` (Ray's processes name their temp dir)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(str(folder) in command for folder in folders):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


@contextlib.contextmanager
def two_nodes(remote_cpus: int = 1, object_store: int = 80_000_000) -> Iterator[TwoNodes]:
    """Start the head and the remote node in a keeper process; yield; shut both down, remove their folders."""
    head_dir = Path(tempfile.mkdtemp(prefix="tlh-"))  # short: Ray's socket paths must stay short
    node_dir = Path(tempfile.mkdtemp(prefix="tln-"))
    remote_data = Path(tempfile.mkdtemp(prefix="tl-remote-data-"))
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    keeper = subprocess.Popen(
        [sys.executable, __file__, str(head_dir), str(node_dir), str(remote_data), str(remote_cpus),
         str(object_store)], env={**os.environ, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(head_dir.parent / f"{head_dir.name}.log", "wb"), text=True, start_new_session=True)
    try:
        line = keeper.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError("the two-node Ray cluster did not start: "
                               + (head_dir.parent / f"{head_dir.name}.log").read_text(errors="replace")[-3000:])
        started = json.loads(line)
        yield TwoNodes(started["address"], remote_data, started["remote_node"], env)
    finally:
        with contextlib.suppress(BrokenPipeError):
            keeper.stdin.close()
        try:
            keeper.wait(60)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait(10)
        _end_strays([head_dir, node_dir])
        for folder in (head_dir, node_dir, remote_data):
            shutil.rmtree(folder, ignore_errors=True)
        (head_dir.parent / f"{head_dir.name}.log").unlink(missing_ok=True)


def _keep(head_dir: str, node_dir: str, remote_data: str, remote_cpus: str, object_store: str) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=1, include_dashboard=False, object_store_memory=int(object_store), temp_dir=head_dir))
    node = cluster.add_node(num_cpus=int(remote_cpus), resources={REMOTE_RESOURCE: 1},
                            object_store_memory=int(object_store), temp_dir=node_dir,
                            env_vars={"TL_DATA_DIR": remote_data})
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "remote_node": node.node_id}), flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.shutdown()


if __name__ == "__main__":
    _keep(*sys.argv[1:6])
