"""A private local Ray cluster for one more verl run on a node where another one is already running.

verl 0.9.1 names the socket through which the trainer hands the weights to vLLM after the Ray job:
``/tmp/rl-colocate-zmq-<job id>-replica-<r>-rank-<k>.sock``. Every fresh local cluster numbers its first
job ``01000000``, so two verl runs started side by side on one node, each in its own cluster (verl's
``ray.init()``), bind the same socket path: the second run's vLLM can receive the first run's weights.
This module starts a cluster, spends job ids on throwaway drivers so that the run that joins next gets
job ``job``, writes the cluster's address to a file and keeps the cluster alive until it is killed::

    python -m verl_perception.ray_cluster --address-file F --job 2 &
    RAY_ADDRESS=$(cat F) RAY_AUTH_MODE=token python -m verl.trainer.main_ppo ...   # job 02000000

The run that starts its own cluster is job 1; give the k-th run beside it ``--job k``.
``RAY_AUTH_MODE=token`` makes the joining driver present the token that Ray (>= 2.59) sets up for local
clusters in ``~/.ray/auth_token``; without it the cluster refuses the driver.
``recipes/learning_check_seeds.sh`` uses this to run several seeds on one GPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

THROWAWAY = "import ray, sys; ray.init(address=sys.argv[1]); ray.shutdown()"


def start(address_file: str, job: int) -> str:
    """Start the cluster (this process is its first driver, job 1), run ``job - 2`` throwaway drivers,
    then write the GCS address to ``address_file`` (atomically). Returns the address."""
    import ray

    if job < 2:
        raise ValueError(f"job must be >= 2 (job 1 is the run that starts its own cluster), got {job}")
    ray.init(include_dashboard=False)
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    for _ in range(job - 2):
        subprocess.run([sys.executable, "-c", THROWAWAY, address], check=True, env=env)
    tmp = f"{address_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(address)
    os.replace(tmp, address_file)
    return address


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m verl_perception.ray_cluster", description=__doc__.split("\n")[0])
    p.add_argument("--address-file", required=True, help="where to write the cluster's address")
    p.add_argument("--job", type=int, required=True, help="the Ray job number the next driver gets (>= 2)")
    args = p.parse_args(argv)
    address = start(args.address_file, args.job)
    print(f"ray cluster {address}: the next driver is job {args.job}", flush=True)
    while True:  # the cluster lives as long as this driver
        time.sleep(3600)


if __name__ == "__main__":
    main()
