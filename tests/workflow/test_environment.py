"""environment.yml (conda) and pyproject.toml (pip) describe the same environment, and the Makefile builds it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# the `cuda` extra (mamba-ssm) is an optional step of its own (environment.yml's header), built against the torch
# the environment installs
ENVIRONMENT_EXTRAS = ("workflow", "dev")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pyproject_requirements(extras: tuple[str, ...] = ENVIRONMENT_EXTRAS) -> dict[str, Requirement]:
    project = pyproject()
    texts = list(project["dependencies"])
    for extra in extras:
        texts += [text for text in project["optional-dependencies"][extra] if not text.startswith("pdd[")]
    return {canonicalize_name(req.name): req for req in map(Requirement, texts)}


def environment_pip() -> list[str]:
    dependencies = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    return next(item["pip"] for item in dependencies if isinstance(item, dict) and "pip" in item)


def environment_requirements() -> dict[str, Requirement]:
    requirements = [Requirement(text) for text in environment_pip() if not text.startswith("-e ")]
    return {canonicalize_name(req.name): req for req in requirements}


def test_same_packages_in_both_files():
    assert set(environment_requirements()) == set(pyproject_requirements())


def test_the_environment_installs_pdd_itself_and_leaves_mamba_ssm_to_its_own_step():
    """Every Snakemake rule runs `pdd` in this environment (`conda: environment.yml`), so pdd must be in it; a
    failing CUDA build of mamba-ssm in the same pip call would leave no environment at all."""
    assert [text for text in environment_pip() if text.startswith("-e ")] == ["-e ${PWD}"]
    cuda_extra = pyproject_requirements(("cuda",)).keys() - pyproject_requirements(()).keys()
    assert cuda_extra == {"mamba-ssm"} and not cuda_extra & environment_requirements().keys()
    header = (REPO / "environment.yml").read_text().split("\nname:")[0]
    assert 'pip install --no-build-isolation "mamba-ssm' in header


def test_environment_pins_satisfy_pyproject():
    wanted = pyproject_requirements()
    for name, pinned in environment_requirements().items():
        exact = [spec.version for spec in pinned.specifier if spec.operator == "=="]
        for version in exact:
            assert wanted[name].specifier.contains(version, prereleases=True), f"{name}=={version} vs {wanted[name]}"


def test_environment_python_satisfies_requires_python():
    dependencies = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    python = next(item for item in dependencies if isinstance(item, str) and item.startswith("python="))
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(pyproject()["requires-python"]).contains(python.split("=")[1] + ".0")


def test_torch_pair_matches_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    torch_line = re.search(r"^TORCH \?= (.+)$", makefile, re.MULTILINE).group(1).split()
    pins = {str(environment_requirements()[name]) for name in ("torch", "torchvision")}
    assert pins == set(torch_line)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_takes_a_torch_index_for_cpu_only_machines():
    """`make test TORCH_INDEX=URL` installs the torch pair from URL, and a new index builds the environment again."""
    url = "https://download.pytorch.org/whl/cpu"
    dry_run = subprocess.run(["make", "-n", "-C", str(REPO), "test", f"TORCH_INDEX={url}"], capture_output=True,
                             text=True, check=True).stdout
    torch_install = next(line for line in dry_run.splitlines() if "pip install" in line and "torch==" in line)
    assert torch_install.split()[-2:] == ["--index-url", url]
    default = subprocess.run(["make", "-n", "-C", str(REPO), "venv"], capture_output=True, text=True).stdout
    assert "--index-url" not in default


# The lowest version of a dependency that has an API pdd uses: (distribution, version, a regex that finds the use
# in pdd/, what the API is). A row whose use is gone from pdd fails the test below: remove it then.
APIS = [
    ("torch", "2.4", r'is_autocast_enabled\("cpu"\)', "torch.is_autocast_enabled(device_type), new in 2.4"),
    ("torchvision", "0.19", r"from torchvision", "the torchvision release built for torch 2.4"),
    ("pydicom", "3.0", r"^import pydicom", "pixel_array converts YBR colour to RGB and the `pydicom.pixels` "
                                          "pipeline exist since 3.0 (2.x returned YBR unconverted)"),
    ("dvclive", "3.0", r"dvcyaml=None", "Live(dvcyaml=None): a path or None since 3.0 (a bool before)"),
]


def lower_bound(requirement: Requirement):
    from packaging.version import Version

    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=", ">")]
    return max(bounds) if bounds else None


def test_every_dependency_has_a_lower_bound():
    unbounded = [str(req) for req in pyproject_requirements(("workflow", "cuda", "dev")).values()
                 if lower_bound(req) is None]
    assert not unbounded, f"give these a lower bound that the code really needs: {unbounded}"


@pytest.mark.parametrize("name, version, use, api", APIS, ids=[row[0] for row in APIS])
def test_lower_bounds_cover_the_apis_pdd_uses(name, version, use, api):
    from packaging.version import Version

    sources = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "pdd").rglob("*.py"))
    assert re.search(use, sources, re.MULTILINE), f"pdd no longer uses {api}: remove this row"
    bound = lower_bound(pyproject_requirements(("workflow", "cuda", "dev"))[name])
    assert bound >= Version(version), f"{name}>={bound} in pyproject.toml, but pdd uses {api}"


def test_requires_python_covers_what_the_code_and_the_workflow_need():
    """tomllib (the tests, 3.11) and Snakemake 9, whose own Requires-Python is read from its installed metadata."""
    import importlib.metadata

    from packaging.specifiers import SpecifierSet

    ours = SpecifierSet(pyproject()["requires-python"])
    needed = [SpecifierSet(">=3.11"), SpecifierSet(importlib.metadata.metadata("snakemake")["Requires-Python"])]
    for minor in range(6, 20):
        version = f"3.{minor}.0"
        if ours.contains(version):
            assert all(spec.contains(version) for spec in needed), f"requires-python allows {version}: {needed}"
