"""A non-editable install runs: the wheel ships every package and the configs (cmrseg.conf)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PIP = [sys.executable, "-m", "pip", "-q"]

# Runs in a fresh interpreter with only the installed wheel's folder on top of the environment:
# each Hydra entry point composes its config through hydra.main (config_path pkg://cmrseg.conf),
# and the phantom and T2* settings load from the shipped YAML.
_CHECK = """
import sys
from pathlib import Path

import cmrseg
import cmrseg.conf

site = Path(sys.argv[1]).resolve()
for module in (cmrseg, cmrseg.conf):
    assert site in Path(module.__file__).resolve().parents, module.__file__

from cmrseg.cli import eval as eval_cli, predict as predict_cli, train as train_cli

for main, args in [
    (train_cli.main, ["experiment=demo", "callbacks/early_stopping=val_jaccard"]),
    (eval_cli.main, ["ckpt_path=x.ckpt"]),
    (predict_cli.main, ["ckpt_path=x.ckpt", "input=in.h5", "output=out"]),
]:
    sys.argv = ["cmrseg", "--cfg", "job", *args]
    main()

from cmrseg.synth import load_cohort, load_synth_config
from cmrseg.synth.config import available
from cmrseg.t2star import load_t2star_config

presets = available("preset")
for preset in presets:
    load_synth_config(preset)
print("presets", *presets)
print("cohort subjects", load_cohort("paper").n_subjects)
print("t2star model", load_t2star_config().fit.model)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the source tree (``pip wheel``; the repository stays clean)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("cmrseg", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*_PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("cmrseg-*.whl")
    return path


def test_wheel_holds_every_module_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "cmrseg").rglob("*.py")}
    configs = {
        f"cmrseg/conf/{p.relative_to(ROOT / 'conf').as_posix()}"
        for p in (ROOT / "conf").rglob("*")
        if p.suffix in (".yaml", ".py") and "local" not in p.relative_to(ROOT / "conf").parts
    }
    assert modules - names == set()
    assert configs - names == set()
    assert "cmrseg/conf/train.yaml" in configs


def test_installed_wheel_runs_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [*_PIP, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "CMRSEG_ROOT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHECK), str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("task_name:")] == [
        "task_name: demo",
        "task_name: eval",
        "task_name: predict",
    ]
    assert "presets clean clinical hard ideal randomized" in lines
    assert "cohort subjects 51" in lines
    assert "t2star model noise_corrected" in lines
