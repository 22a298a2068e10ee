"""What the benchmarks time: steps on a settled heap, not the first steps' page faults.

Run in a fresh interpreter: importing `benchmarks` tunes the allocator (as `pdd` does), which the test process
should not inherit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("resource")  # POSIX: minor page faults come from getrusage

REPO = Path(__file__).resolve().parents[2]

SETTLING = textwrap.dedent("""
    import mmap
    from benchmarks.common import MAX_SETTLING_CALLS, settle

    def faulting_step(fresh_mib):
        # touches fresh_mib[i] MiB of newly mapped memory on its i-th call, kept mapped as a grown heap is
        mappings = []
        def step():
            size = fresh_mib[len(mappings)] << 20
            mapping = mmap.mmap(-1, max(size, mmap.PAGESIZE))
            for offset in range(0, size, mmap.PAGESIZE):
                mapping[offset] = 1
            mappings.append(mapping)
        return step, mappings

    step, calls = faulting_step([8, 4, 4, 0, 0, 0])
    print(settle(step), len(calls))
    step, calls = faulting_step([4] * (MAX_SETTLING_CALLS + 2))
    print(settle(step), len(calls), MAX_SETTLING_CALLS)
""")


def test_settle_calls_until_a_call_no_longer_faults_in_fresh_memory_and_gives_up_at_its_bound():
    result = subprocess.run([sys.executable, "-c", SETTLING], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    until_quiet, bounded = result.stdout.splitlines()
    assert until_quiet.split() == ["4", "4"]  # the first call that faulted in nothing, and no call after it
    settled, calls, bound = bounded.split()
    assert settled == calls == bound
