"""The console script on a base install (no torch): one line naming the extra, not a traceback."""

from __future__ import annotations

import importlib.util

import pytest

from verl_perception import cli


@pytest.mark.parametrize("command", ["demo", "generate"])
def test_missing_torch_gives_the_install_hint(command, monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    argv = [command] if command == "demo" else [command, "--model", "m", "--data", "d", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"verl-perception {command} needs torch, which this install lacks: ")
    assert 'pip install "verl-perception[verl]"' in err[0]


def test_commands_with_their_modules_pass_the_check():
    # this test environment has the [verl] extra: nothing is missing for any command
    assert all(cli.missing_modules(c) == [] for c in ("demo", "generate", "evaluate"))
