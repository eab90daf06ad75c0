"""``kiln serve``'s start: its database is prepared on a thread beside ``ray.init``
(serving/cli/serve.py); a database it cannot reach still stops the start with the
database's own error, exit status 1, and Ray shut down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Nothing listens on port 1: the connection is refused at once.
UNREACHABLE_DATABASE = "postgresql+psycopg://kiln:kiln@127.0.0.1:1/kiln"


def test_a_database_it_cannot_reach_stops_the_start(kiln_home: Path, catalog, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(kiln_home / "models", target_is_directory=True)
    env = {
        **os.environ,
        "KILN_HOME": str(home),
        "KILN_DATABASE_URL": UNREACHABLE_DATABASE,
        "HF_HUB_OFFLINE": "1",
    }
    kiln = Path(sys.executable).with_name("kiln")
    command = [str(kiln)] if kiln.exists() else [sys.executable, "-m", "serving.cli"]
    done = subprocess.run(
        [*command, "serve", "--host", "127.0.0.1", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "OperationalError" in output and "Connection refused" in output, output[-3000:]
    assert "Kiln is serving" not in output  # nothing was deployed
