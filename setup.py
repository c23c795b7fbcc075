"""pip/setuptools install of the Python package (console scripts land in bin/), for the pip-only setup.

In a colcon workspace the package is built by CMakeLists.txt (ament_cmake + rosidl); see docs/packaging.md.
roi-launch/roi-param (launch and param CLIs for the pip-only setup) are not here: dev/roi_codec_devtools.
"""
from setuptools import find_packages, setup

PACKAGE = "roi_codec_ros"

setup(
    name=PACKAGE,
    version="0.2.0",
    description="ROI-aware learned image codec for teleoperated driving, with ROS 2 nodes",
    license="BSD-3-Clause",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    package_data={PACKAGE: ["models/*.pt", "models/*.json", "configs/*.yaml", "data/*.json"]},
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "roi-codec = roi_codec_ros.cli:main",
            "encoder_node = roi_codec_ros.nodes.encoder_node:main",
            "decoder_node = roi_codec_ros.nodes.decoder_node:main",
            "frame_source = roi_codec_ros.nodes.source_node:main",
            "budget_node = roi_codec_ros.nodes.budget_node:main",
        ]
    },
)
