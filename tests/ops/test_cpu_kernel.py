"""The shipped C sources compile warning-free, and a cold cache is compiled once however many processes load it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from importlib import resources

import pytest

from pdd.ops import cpu_kernel

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@needs_gcc
@pytest.mark.parametrize("source_name, flags", [(cpu_kernel.SOURCE, cpu_kernel.FLAGS),
                                                (cpu_kernel.COSINE_SOURCE, cpu_kernel.COSINE_FLAGS)])
def test_shipped_source_compiles_with_every_warning_as_an_error(tmp_path, source_name, flags):
    """The CI gate on the kernels: the package-data files themselves, with the loader's own optimisation flags."""
    source = resources.files("pdd.ops").joinpath(source_name)
    flags = [flag for flag in flags if flag != "-shared"]
    result = subprocess.run(
        ["gcc", "-Wall", "-Wextra", "-Werror", *flags, "-c", str(source), "-o", str(tmp_path / "kernel.o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr


# Each loader waits until both are ready, so that they really race for the cold cache.
LOADER = textwrap.dedent("""
    import pathlib, sys, time
    from pdd.ops import cpu_kernel
    ready = pathlib.Path(sys.argv[1])
    (ready / sys.argv[2]).touch()
    while len(list(ready.iterdir())) < 2:
        time.sleep(0.01)
    library = cpu_kernel.load_kernel()
    print(library._name if library is not None else "no kernel")
""")


@needs_gcc
def test_concurrent_processes_on_a_cold_cache_compile_once(tmp_path):
    invocations = tmp_path / "compiler_invocations"
    compiler = tmp_path / "counting-cc"
    # A slow compiler: without the lock both processes would find no library and both compile.
    compiler.write_text(f'#!/bin/sh\necho run >> "{invocations}"\nsleep 1\nexec gcc "$@"\n')
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    cache, ready = tmp_path / "kernels", tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "CC": str(compiler), "PDD_KERNEL_DIR": str(cache), "PDD_SCAN_KERNEL": "1"}
    loaders = [
        subprocess.Popen([sys.executable, "-c", LOADER, str(ready), name], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for name in ("rank0", "rank1")
    ]
    results = [loader.communicate(timeout=120) for loader in loaders]
    assert all(loader.returncode == 0 for loader in loaders), [err for _, err in results]
    libraries = {out.strip() for out, _ in results}
    assert len(libraries) == 1 and next(iter(libraries)).endswith(".so"), results
    assert invocations.read_text().splitlines() == ["run"], "the kernel must be compiled exactly once"
    assert sorted(path.suffix for path in cache.iterdir()) == [".lock", ".so"]
