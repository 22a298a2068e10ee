"""environment.yml (conda) and pyproject.toml (pip) describe the same environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in ("workflow", "cuda", "dev"):
        texts += [text for text in project["optional-dependencies"][extra] if not text.startswith("pdd[")]
    return {canonicalize_name(req.name): req for req in map(Requirement, texts)}


def environment_requirements() -> dict[str, Requirement]:
    dependencies = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(item["pip"] for item in dependencies if isinstance(item, dict) and "pip" in item)
    return {canonicalize_name(req.name): req for req in map(Requirement, pip)}


def test_same_packages_in_both_files():
    assert set(environment_requirements()) == set(pyproject_requirements())


def test_environment_pins_satisfy_pyproject():
    wanted = pyproject_requirements()
    for name, pinned in environment_requirements().items():
        exact = [spec.version for spec in pinned.specifier if spec.operator == "=="]
        for version in exact:
            assert wanted[name].specifier.contains(version, prereleases=True), f"{name}=={version} vs {wanted[name]}"


def test_torch_pair_matches_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    torch_line = re.search(r"^TORCH \?= (.+)$", makefile, re.MULTILINE).group(1).split()
    pins = {str(environment_requirements()[name]) for name in ("torch", "torchvision")}
    assert pins == set(torch_line)
