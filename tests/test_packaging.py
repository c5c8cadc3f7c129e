"""What an installed tuner holds: the wheel carries the shipped search spaces that `include:` and
`search_space:` fall back to (they lived outside the package, and an installed tuner had none)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

_SPEC = """name: mine
objective: obj.py:objective
search_space:
  include: [optimizers.yaml, regularization.yaml]
  params: {x: {float: [0.0, 1.0]}}
"""


def test_the_wheel_holds_the_shipped_search_spaces_and_an_install_finds_them(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "search_spaces", source / "search_spaces")
    shutil.copytree(ROOT / "tuner", source / "tuner", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("tuner-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert shipped and {f"tuner/search_spaces/{n}" for n in shipped} <= names
    assert {"tuner/dashboard/templates/study.html", "tuner/dashboard/static/dashboard.js", "tuner/__main__.py"} <= names

    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    work = tmp_path / "work"
    work.mkdir()
    (work / "obj.py").write_text("def objective(params, ctx):\n    return params['x']\n")
    (work / "mine.yaml").write_text(_SPEC)
    out = subprocess.run([sys.executable, "-c", "import sys; from tuner.cli import main; main()", "validate",
                          "mine.yaml"], cwd=work, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0 and "mine.yaml: ok" in out.stdout, out.stderr[-2000:]
    assert str(installed / "tuner" / "search_spaces") in subprocess.run(
        [sys.executable, "-c", "from tuner.space import SEARCH_SPACES_DIR; print(SEARCH_SPACES_DIR)"],
        capture_output=True, text=True, timeout=60, cwd=work, env={"PYTHONPATH": str(installed)}).stdout
