"""Ships firmware/ and boards/ (beside the package in the checkout) inside the wheel, as
roadnode/_data/, where roadnode.paths finds them; everything else is in pyproject.toml.
An editable install keeps using the checkout's folders (nothing copied)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("firmware", "boards")


class BuildPyWithFirmware(build_py):
    """build_py, then firmware/ and boards/ copied into the built package (no caches)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            dst = Path(self.build_lib) / "roadnode" / "_data" / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(HERE / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy"))


setup(cmdclass={"build_py": BuildPyWithFirmware})
