"""Build hook: ship the repository's Hydra configs (conf/) inside the package as ``src/conf``.

conf/ stays where it is in the checkout (``python train.py`` reads it there); an installed wheel finds the
copy through :func:`src.utils.confdir.config_dir`. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    """``build_py`` that also copies ``conf/**/*.yaml`` to ``<build>/src/conf``."""

    def run(self) -> None:
        super().run()
        dst = Path(self.build_lib) / "src" / "conf"
        shutil.copytree(CONF, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("local", "*.pyc"))
        example = CONF / "local" / "example.yaml"
        if example.is_file():
            (dst / "local").mkdir(exist_ok=True)
            shutil.copy2(example, dst / "local" / "example.yaml")


setup(cmdclass={"build_py": BuildPyWithConf})
