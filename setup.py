"""zsp_ros: universal zero-shot segmentation (PADing) for ROS 2 — an ament_python package.

Installed into the project venv by tools/setup_env.sh (editable), or built by colcon on a robot
next to zsp_msgs (msg/): README "On a robot". setup.cfg puts the console scripts in lib/zsp_ros.
Dependencies: requirements.lock here; package.xml (rosdep) + requirements-robot.txt on a robot.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "zsp_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["zsp_ros", "zsp_ros.*"]),   # experiments/ is not installed
    package_data={PACKAGE: ["kits/*/*", "kits/*/*/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json")),
        (f"share/{PACKAGE}/config/coco_splits", glob("config/coco_splits/*.json")),
        (f"share/{PACKAGE}/config/vocabulary", glob("config/vocabulary/*.json")),
        (f"share/{PACKAGE}/config/colours", glob("config/colours/*.tsv")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "setuptools"],
    zip_safe=False,
    maintainer="zsp_ros maintainers",
    maintainer_email="zsp-ros@example.com",
    description="Universal zero-shot panoptic/instance/semantic segmentation (PADing) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "zsp = zsp_ros.cli.main:main",
            "zsp_node = zsp_ros.node.main:main",
        ],
    },
)
