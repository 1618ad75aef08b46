"""ament_python package lunar_recon: builds with colcon in a ROS 2 workspace and
installs with pip (editable) on a machine with no ROS at all."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lunar_recon"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    # Data files are what colcon installs into share/; a pip install ignores them.
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    # The shipped student is package data of its own (sub)package, installed once, beside the code
    # that finds it (models/registry.py).
    package_data={PACKAGE + ".models.shipped": ["*.pt", "*.md", "*.yaml", "*.json"]},
    include_package_data=True,
    # Runtime dependencies come from package.xml (ROS) or scripts/requirements.txt (pip);
    # listing torch here would let pip replace the CPU build with a CUDA one.
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="lunar_recon developers",
    maintainer_email="lunar-recon@example.org",
    description="Stereo depth, point clouds and slope-hazard maps for lunar landers and rovers "
    "from students distilled from MASt3R.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "lunar-recon = lunar_recon.cli:main",
            "stereo_node = lunar_recon.ros.stereo_node:main",
        ],
    },
)
