"""A wheel built from a clean clone carries the JS bundles and works without Node on the user's machine."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    _run(["git", "clone", "-q", str(ROOT), str(src)])
    assert not (src / "nbexplain" / "static" / "heatmap.js").exists(), "the bundle is build output, not in git"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("nbexplain-*.whl")
    return whl


def test_wheel_contains_bundles_and_no_sources(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "nbexplain/static/heatmap.js" in names
    assert "nbexplain/py.typed" in names
    views = [n for n in names if n.startswith("nbexplain/static/") and n.endswith(".js") and n.count("/") == 2]
    sources = sorted(p.stem for p in (ROOT / "js").glob("*.ts") if not p.name.endswith(".d.ts"))
    committed = set(
        subprocess.run(["git", "ls-files", "js"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    expected = [s for s in sources if f"js/{s}.ts" in committed]
    assert sorted(Path(v).stem for v in views) == expected, "one bundle per committed view source"
    assert not any(n.startswith(("js/", "tests/", "node_modules/")) for n in names)
    # the widget renderer for offline HTML export (nbexplain.export), with its licences
    for asset in ("require.js", "embed-amd.js", "requirejs.LICENSE.txt", "html-manager.LICENSE.txt"):
        assert f"nbexplain/static/export/{asset}" in names, asset
    assert "nbexplain/export.py" in names


def test_wheel_installs_and_renders_without_node(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)])
    # Dependencies (torch, anywidget, …) come from this environment's site-packages; nbexplain itself must
    # come from the wheel. A path added by a .pth line does not process that directory's own .pth files,
    # so this environment's editable install of nbexplain stays invisible.
    fresh_site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (fresh_site / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    code = (
        "import pathlib, shutil, torch, nbexplain\n"
        "from nbexplain.widgets import Heatmap\n"
        "assert shutil.which('node') is None, 'node must not be on PATH'\n"
        "print(nbexplain.__file__)\n"
        "h = Heatmap(torch.rand(2, 3, 3))\n"
        "assert 'render' in str(h._esm) and len(str(h._esm)) > 1000\n"
        "print(sorted(p.name for p in (pathlib.Path(nbexplain.__file__).parent / 'static').glob('*.js')))\n"
    )
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path)}
    out = _run([str(py), "-c", code], env=env, cwd=tmp_path).stdout
    assert str(venv) in out.splitlines()[0], f"nbexplain was imported from {out.splitlines()[0]}, not the wheel"
    assert "heatmap.js" in out
