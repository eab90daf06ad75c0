"""``kiln batch`` on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``,
one CPU a node): a driver killed with SIGKILL mid-run loses only its in-flight lines, the
rerun completes with one file and one entry per line, and the work ran on both nodes.

One test does both: every pool start loads torch and the model in each actor (~20 s on
2 cores), so the rerun after the kill is also the multi-node run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_helpers import gen, leftovers, read_manifest, write_jsonl
from PIL import Image

from serving.http.batch.parsing import parse_batch
from serving.ray.batch.manifest import MANIFEST, Manifest
from serving.ray.batch.runner import BatchOptions, run_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def node_ids() -> set[str]:
    import ray

    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def parse(path: Path, catalog, settings):
    lines, invalid = parse_batch(
        path.read_text(), base_dir=path.parent, catalog=catalog, settings=settings
    )
    assert invalid == []
    return lines


def wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"kiln batch exited ({proc.returncode}) early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out; kiln batch said:\n{log.read_text()}")
        time.sleep(0.05)


def test_a_sigkilled_driver_loses_only_in_flight_lines_and_both_nodes_work(
    two_nodes, catalog, batch_settings, kiln_home, tmp_path
):
    assert len(node_ids()) == 2
    # 256 px and 4 steps: long enough lines that the kill lands mid-run.
    count = 12
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [gen(f"kiln {i}", resolution="256px", steps=4) for i in range(count)],
    )
    out = tmp_path / "out"
    log = tmp_path / "kiln.log"
    env = {
        **os.environ,
        "KILN_HOME": str(kiln_home),  # the session's tiny models
        "KILN_DATABASE_URL": batch_settings.database_url,
        "KILN_TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    batch_settings.home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "serving.cli", "batch", str(jobs), "--out", str(out),
               "--address", two_nodes.address, "--workers", "2"]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    manifest = out / MANIFEST

    def entries_written() -> int:
        return manifest.read_bytes().count(b"\n") if manifest.exists() else 0

    wait_for(lambda: entries_written() >= 3, 240, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # Whatever the kill interrupted, every finished-looking file is a whole PNG.
    done_before = Manifest(out).entries()  # a torn last line (a kill mid-append) ignored
    assert 3 <= len(done_before) < count, "the kill should land mid-run"
    for path in out.glob("*.png"):
        with Image.open(path) as image:
            image.load()
    mtimes = {name: (out / name).stat().st_mtime_ns for e in done_before.values()
              for name in e["outputs"]}  # fmt: skip

    lines = parse(jobs, catalog, batch_settings)
    summary = run_batch(batch_settings, catalog, lines, BatchOptions(out, workers=2))
    assert summary.skipped == len(done_before)
    assert summary.ran == count - len(done_before) and summary.failed == 0

    final = read_manifest(out)
    assert [e["line"] for e in final] == list(range(1, count + 1))  # one entry per line
    assert all(e["error"] is None for e in final)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, *(f"{n:06d}-0.png" for n in range(1, count + 1))]
    )
    assert leftovers(out) == []
    for name, mtime in mtimes.items():  # lines finished before the kill were not redone
        assert (out / name).stat().st_mtime_ns == mtime
    # The rerun's pool of two actors spread over the two nodes (Ray Data's SPREAD).
    assert {e["node_id"] for e in summary.entries if e["line"] not in done_before} == node_ids()


def test_ctrl_c_stops_after_the_lines_in_flight_and_leaves_no_credits_held(
    two_nodes, catalog, batch_settings, kiln_home, tmp_path
):
    """SIGINT to the driver's process group, as a terminal's Ctrl-C sends it: the lines
    running finish and are recorded (they were charged), no further line starts, exit 130,
    and the tenant's balance holds nothing."""
    from serving.core.ledger import Ledger

    count = 12
    jobs = write_jsonl(
        tmp_path / "jobs.jsonl",
        [gen(f"kiln {i}", resolution="256px", steps=4) for i in range(count)],
    )
    with Ledger(batch_settings.database_url) as ledger:
        tenant = ledger.create_tenant("ctrl-c")
        ledger.grant(tenant.id, 100)
    out = tmp_path / "out"
    log = tmp_path / "kiln.log"
    env = {**os.environ, "KILN_HOME": str(kiln_home), "HF_HUB_OFFLINE": "1",
           "KILN_DATABASE_URL": batch_settings.database_url, "KILN_TORCH_THREADS": "1"}  # fmt: skip
    command = [sys.executable, "-m", "serving.cli", "batch", str(jobs), "--out", str(out),
               "--address", two_nodes.address, "--workers", "2", "--tenant", tenant.id]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    manifest = out / MANIFEST
    wait_for(lambda: manifest.exists() and manifest.read_bytes().count(b"\n") >= 1, 240,
             proc, log)  # fmt: skip
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    assert "stopping after the lines in flight" in log.read_text()

    entries = read_manifest(out)
    assert 1 <= len(entries) < count, "the stop should land mid-run"
    assert all(e["error"] is None for e in entries)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        name for e in entries for name in e["outputs"]
    )
    assert leftovers(out) == []
    with Ledger(batch_settings.database_url) as ledger:
        balance = ledger.balance(tenant.id)
    charged = sum(e["credits_charged"] for e in entries)
    assert charged > 0 and (balance.available, balance.held) == (100 - charged, 0)
