"""Build hook (the project's metadata is in pyproject.toml).

``launch.html``, the app's registered SMART launch page, lives at the repository's top
level; the wheel ships a copy inside the package (``smart_app/launch.html``), where the
installed app reads it (``smart_app/views/pages.py: launch_page_file``).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithLaunchPage(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):  # an editable install reads the checkout's file
            self.copy_file(str(ROOT / "launch.html"), str(Path(self.build_lib) / "smart_app" / "launch.html"))


setup(cmdclass={"build_py": BuildPyWithLaunchPage})
