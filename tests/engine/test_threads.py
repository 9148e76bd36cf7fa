"""Threads under CPU contention (issue 14, item 8): the command-line tools set OMP_WAIT_POLICY=PASSIVE before torch
loads its OpenMP runtime (which reads it once), keep a value the user set, and ``train.num_threads`` applies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from uasan.engine.threads import configure_threads

SPY = """
import os, runpy, sys

class Spy:  # records the environment at the moment torch is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("OMP_WAIT_POLICY at import torch:", os.environ.get("OMP_WAIT_POLICY"), flush=True)
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, Spy())
sys.argv = ["uasan", "--help"]
try:
    runpy.run_module(sys.argv_module, run_name="__main__")
except SystemExit:
    pass
"""


@pytest.mark.parametrize("module", ["uasan.train", "uasan.predict"])
@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_wait_policy_is_set_before_torch_loads(module, given):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = SPY.replace("sys.argv_module", repr(module))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"OMP_WAIT_POLICY at import torch: {given or 'PASSIVE'}" in proc.stdout, proc.stdout[:500]


def test_configure_threads():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 == torch.get_num_threads()
        assert configure_threads(0) == 1  # auto keeps what is in effect (torch's default in a fresh process)
        with pytest.raises(ValueError, match="train.num_threads"):
            configure_threads(-1)
    finally:
        torch.set_num_threads(before)
