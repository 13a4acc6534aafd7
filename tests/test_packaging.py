"""launch.html is a top-level file of the repository, ships in the wheel (and the sdist), and
is what the installed app serves at /launch.html.

The wheel is built from a copy of the sources with the installed setuptools (no network,
no build isolation), unpacked, and the app is started from the unpacked copy only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "launch.html", "smart_app", "fhir_mappings")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    script = ("import setuptools.build_meta as b; w = b.build_wheel('dist'); s = b.build_sdist('dist'); "
              "print('BUILT', w, s)")
    done = subprocess.run([sys.executable, "-c", script], cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("BUILT ")]
    _, wheel, sdist = line.split()
    return {"wheel": src / "dist" / wheel, "sdist": src / "dist" / sdist}


def test_launch_html_is_at_the_top_level():
    assert (ROOT / "launch.html").is_file()
    assert not (ROOT / "smart_app" / "templates" / "launch.html").exists()


def test_the_wheel_ships_launch_html(built):
    with zipfile.ZipFile(built["wheel"]) as whl:
        assert whl.read("smart_app/launch.html") == (ROOT / "launch.html").read_bytes()
        names = set(whl.namelist())
    assert "smart_app/static/favicon.svg" in names and "smart_app/templates/report.html" in names


def test_the_sdist_carries_launch_html_and_the_build_hook(built):
    with tarfile.open(built["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"launch.html", "setup.py", "MANIFEST.in"} <= names


def test_the_installed_app_serves_the_shipped_launch_html(built, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(built["wheel"]) as whl:
        whl.extractall(site)
    probe = (
        "import sys; from pathlib import Path\n"
        "from smart_app.config import load_config\n"
        "from smart_app.web import create_app\n"
        "import smart_app\n"
        f"assert Path(smart_app.__file__).resolve().is_relative_to(Path({str(site)!r}).resolve())\n"
        "app = create_app(load_config({'IVIG_SECRET_KEY': 'k' * 32, 'IVIG_PUBLIC_BASE_URL': 'http://127.0.0.1:8000',"
        f" 'IVIG_SESSION_DB': {str(tmp_path / 's.sqlite')!r}}}))\n"
        "resp = app.test_client().get('/launch.html')\n"
        "assert resp.status_code == 200, resp.status_code\n"
        "with app.app_context():\n"
        "    print(app.jinja_env.get_template('launch.html').filename)\n"
        "print('Standalone launch' in resp.get_data(as_text=True))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    served_from, has_form = done.stdout.split()
    assert Path(served_from) == site / "smart_app" / "launch.html"
    assert has_form == "True"
