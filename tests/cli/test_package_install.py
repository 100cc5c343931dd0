"""`pip install .` gives tlcore and the transfer-lab command (offline: no dependency is fetched)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pip_install_gives_the_library_and_the_command(tmp_path):
    source = tmp_path / "source"  # a copy: the build's own folders stay out of the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("tlcore", "tlcore_cli"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-index", "--quiet", "--target", str(target), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [info] = target.glob("transfer_lab-*.dist-info")
    metadata = (info / "METADATA").read_text()
    for pin in ("tensorflow-cpu==2.21.0", "keras==3.15.1", "tensorboard==2.21.0", "ray[train,tune]==2.60.0"):
        assert f"Requires-Dist: {pin}" in metadata
    assert "Provides-Extra: app" in metadata and 'streamlit==1.67.0; extra == "app"' in metadata
    assert (target / "tlcore" / "models" / "imagenet_class_index.json").is_file()
    assert not (target / "ui").exists() and not (target / "pages").exists()  # the dashboard is not the package

    environ = {**os.environ, "PYTHONPATH": str(target)}
    helped = subprocess.run([str(target / "bin" / "transfer-lab"), "--help"], capture_output=True, text=True,
                            env=environ, cwd=tmp_path, timeout=300)
    assert helped.returncode == 0 and "predict" in helped.stdout and "runs" in helped.stdout, helped.stderr
    where = subprocess.run([sys.executable, "-c", "import tlcore, tlcore_cli; print(tlcore.__file__)"],
                           capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=300)
    assert where.stdout.strip() == str(target / "tlcore" / "__init__.py")
