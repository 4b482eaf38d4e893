import tomllib
from dataclasses import dataclass
from typing import ClassVar

import pytest
import yaml

from deffiller.config import PROFILES, REPO_ROOT, configs_dir, load_profile
from deffiller.errors import DefFillerError


@dataclass
class ExampleSection:
    SECTION: ClassVar[str] = "example"
    steps: int = 1
    sizes: tuple[int, ...] = (1,)


def test_profiles_load_and_differ():
    profiles = {name: load_profile(name) for name in PROFILES}
    assert profiles["paper"].data.image_size == 256 and profiles["paper"].data.mask_channels == 152
    assert profiles["tiny"].data.image_size < 256
    assert profiles["tiny"].path("figures") == REPO_ROOT / "figures" / "tiny"


def test_sections_are_typed_and_strict(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"profile": "p", "example": {"steps": 5, "sizes": [2, 3]}}))
    profile = load_profile(path, overrides={"example.steps": 7})
    section = profile.section(ExampleSection)
    assert section.steps == 7 and section.sizes == (2, 3)
    path.write_text(yaml.safe_dump({"example": {"stesp": 5}}))
    with pytest.raises(DefFillerError, match=r"unknown key\(s\) \['stesp'\]"):
        load_profile(path).section(ExampleSection)
    with pytest.raises(DefFillerError, match="not found"):
        load_profile("nonexistent")


def test_every_profile_section_is_claimed_by_the_same_keys():
    """All profiles set the same keys, so a notebook never meets a key one profile lacks (a setting that is a number in
    one profile and a per-network mapping in another, such as detect.max_steps, is one key)."""
    loaded = [yaml.safe_load((configs_dir() / f"{name}.yaml").read_text()) for name in PROFILES]

    def same_keys(trees, where):
        assert all(set(tree) == set(trees[0]) for tree in trees), where
        for key in trees[0]:
            if all(isinstance(tree[key], dict) for tree in trees):
                same_keys([tree[key] for tree in trees], f"{where}.{key}")

    same_keys(loaded, "profile")


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(d.split("=")[0] for d in conda_deps) == ["pip", "python"]
    python = next(d for d in conda_deps if d.startswith("python="))
    major, minor = python.split("=")[1].split(".")[:2]
    assert project["requires-python"] == ">=3.10" and int(minor) >= 10 and major == "3"
    extras = set(pip_section[0].split("[")[1].rstrip("]").split(","))
    assert pip_section == [pip_section[0]] and pip_section[0].startswith("-e .[")
    assert extras == set(project["optional-dependencies"]) 
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch>"))
    assert "2.14.1" in torch_pin


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "bash run_tests.sh" in readme and "bash run_all.sh" in readme
    assert "bash run_tests.sh" in ci
