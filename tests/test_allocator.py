"""The `pdd` process keeps freed tensor memory (pdd.allocator): a training step's large activations are
reused from the heap instead of being mapped and faulted in again every step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning applies to glibc only")

REPO = Path(__file__).resolve().parents[1]
# 100 MB tensors: above glibc's largest default mmap threshold (32 MiB), so untuned each one is a fresh mapping
FAULTS_PER_ALLOCATION = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):  # the heap settles within ~8 rounds: torch's small allocations leave gaps between big ones
    torch.empty(25_000_000).fill_(1)
before = faults()
for _ in range(4):
    torch.empty(25_000_000).fill_(1)
print((faults() - before) / 4)
"""
PAGES_PER_ALLOCATION = 100_000_000 // os.sysconf("SC_PAGE_SIZE")


def faults_per_allocation(prologue: str, **env: str) -> float:
    result = subprocess.run([sys.executable, "-c", prologue + FAULTS_PER_ALLOCATION], capture_output=True,
                            text=True, check=False, cwd=REPO, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


@pytest.mark.parametrize("prologue", [
    "from pdd.allocator import tune_allocator; assert tune_allocator()\n",
    # the command line tunes first, whatever the command
    "from pdd.cli import main; assert main(['params', 'check']) == 0\n",
], ids=["tune_allocator", "pdd_cli"])
def test_a_tuned_process_reuses_freed_tensor_memory(prologue):
    assert faults_per_allocation(prologue) < 0.05 * PAGES_PER_ALLOCATION
    # the same process with the tuning turned off faults every page in again: what the tuning removes
    assert faults_per_allocation(prologue.replace("assert tune_allocator()", "tune_allocator()"),
                                 PDD_MALLOC_TUNING="0") > 0.5 * PAGES_PER_ALLOCATION


def test_tuning_reports_what_it_set_and_is_applied_once():
    script = ("from pdd import allocator; first = allocator.tune_allocator(); "
              "assert allocator.tune_allocator() is first; print(sorted(first))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['M_ARENA_MAX', 'M_MMAP_THRESHOLD', 'M_TRIM_THRESHOLD']"
