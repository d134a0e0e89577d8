"""`pip install .` installs the folders at the repository root under the one namespace `guided_diffusers`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("schedulers", "guiders", "pipelines", "models", "evaluation", "training")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("guided_diffusers-*.whl")
    return path


def test_wheel_holds_only_the_guided_diffusers_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"guided_diffusers", next(n for n in top_level if n.endswith(".dist-info"))}
    for package in SUBPACKAGES:
        assert f"guided_diffusers/{package}/__init__.py" in names
    assert "guided_diffusers/__init__.py" not in names  # an implicit namespace package
    assert not any(name.startswith("tests/") or name == "app.py" for name in names)


def test_installed_wheel_imports_from_its_install_location(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["guided_diffusers"]
    code = (
        "import guided_diffusers.schedulers as s; "
        "print(s.__file__); print(s.GuidedDDIMScheduler().config.num_train_timesteps)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    module_file, timesteps = result.stdout.split()
    assert Path(module_file).is_relative_to(target) and timesteps == "1000"


def test_readme_is_a_valid_space_card_and_requirements_install_the_package():
    import yaml

    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    metadata = yaml.safe_load(text.split("---\n")[1])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and (REPO / metadata["app_file"]).is_file()
    assert {"sdk_version", "models", "license", "short_description"} <= set(metadata)
    assert len(metadata["short_description"]) <= 60  # the Hub's limit
    import gradio

    assert metadata["sdk_version"] == gradio.__version__
    requirements = [line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert any(line.startswith(".") for line in requirements)
