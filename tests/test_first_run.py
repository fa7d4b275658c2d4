"""A first run after ``pip install .``: importing advrec from the checkout's root finds the source
tree, which has no compiled core; the error must say so and what to do (issue 15)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import advrec.kernels._native as native


def fake_checkout(root: Path) -> Path:
    """pyproject.toml, csrc/ and an advrec package whose kernels/_native.py is the real one."""
    (root / "csrc").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'advrec'\n")
    (root / "advrec" / "kernels").mkdir(parents=True)
    (root / "advrec" / "__init__.py").write_text("")
    (root / "advrec" / "kernels" / "__init__.py").write_text("")
    shutil.copy(native.__file__, root / "advrec" / "kernels" / "_native.py")
    return root


def import_error(cwd: Path, pythonpath: str) -> str:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    # -S: no site-packages, so an advrec installed in this environment does not take part
    res = subprocess.run([sys.executable, "-S", "-c", "import advrec.kernels._native"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    return res.stderr.strip().splitlines()[-1]


def test_source_tree_shadowing_an_installed_package_is_named(tmp_path):
    checkout = fake_checkout(tmp_path / "checkout")
    installed = tmp_path / "site" / "advrec"
    installed.mkdir(parents=True)
    (installed / "_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    msg = import_error(checkout, str(tmp_path / "site"))
    assert "imported from the source checkout" in msg and str(installed) in msg
    assert "run from another folder" in msg and "pip install -e ." in msg


def test_a_checkout_without_an_install_says_how_to_build(tmp_path):
    checkout = fake_checkout(tmp_path / "checkout")
    msg = import_error(checkout, "")
    assert "missing from the source checkout" in msg and "pip install ." in msg
