"""verl_perception.ray_cluster: a private Ray cluster whose next driver gets a chosen job id (so that
side-by-side verl runs name their weight sockets differently)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from verl_perception import ray_cluster

JOB_ID = "import ray; ray.init(); print('JOB', ray.get_runtime_context().get_job_id())"


def test_the_next_driver_gets_the_job_asked_for(tmp_path):
    address_file = tmp_path / "address"
    cluster = subprocess.Popen(
        [sys.executable, "-m", "verl_perception.ray_cluster", "--address-file", str(address_file), "--job", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not address_file.exists() and cluster.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert address_file.exists(), cluster.stdout.read() if cluster.poll() is not None else "no address in 120 s"
        env = {**os.environ, "RAY_ADDRESS": address_file.read_text(), "RAY_AUTH_MODE": "token"}
        out = subprocess.run([sys.executable, "-c", JOB_ID], env=env, capture_output=True, text=True, timeout=120)
        assert "JOB 03000000" in out.stdout, out.stdout + out.stderr[-2000:]
    finally:
        cluster.kill()
        cluster.wait(timeout=30)


def test_job_1_is_the_run_with_its_own_cluster(tmp_path):
    with pytest.raises(ValueError, match="job must be >= 2"):
        ray_cluster.start(str(tmp_path / "address"), 1)
