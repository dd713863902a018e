"""Package discovery (the metadata is in pyproject.toml).

Every Python package under cusim/ is found, so a new subpackage ships without editing a list (a fixed
list once left cusim.recon out of the wheel). The CUDA sources live in the top-level kernels/ folder
(DESIGN section 4) and ship inside the package as cusim/kernels, where the loader looks first.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["cusim", "cusim.*"]), "cusim.kernels"],
      package_dir={"cusim.kernels": "kernels"})
