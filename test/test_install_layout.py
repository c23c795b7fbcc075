"""Where the installed roi_codec_ros comes from, in the two supported layouts (docs/packaging.md).

* colcon install: ``colcon test`` runs this file (CMakeLists.txt, ``ROI_CODEC_EXPECT_LAYOUT=colcon``): the
  Python package, the rosidl-generated ``roi_codec_ros.msg``, the nodes, the executables and launch/config must
  all come from the install prefix, with our ``__init__.py`` (not rosidl's empty one).
* pip-only venv (scripts/test.sh): the package is the editable checkout, the messages, executables and
  launch/config files are in the venv prefix beside the ROS wheels, and ``AMENT_PREFIX_PATH`` (scripts/env.sh)
  resolves every interface package our messages use (``ros2 interface show`` needs that).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
EXECUTABLES = ("encoder_node", "decoder_node", "frame_source")


def _layout() -> str:
    layout = os.environ.get("ROI_CODEC_EXPECT_LAYOUT")
    if layout:
        assert layout in ("colcon", "pip"), f"ROI_CODEC_EXPECT_LAYOUT={layout!r}"
        return layout
    if Path(sys.prefix).resolve() == (REPO / ".venv").resolve():
        return "pip"
    pytest.skip("not under `colcon test` and not in this checkout's pip-only venv: no layout to check")


@pytest.fixture(scope="module")
def layout() -> str:
    return _layout()


@pytest.fixture(scope="module")
def prefix(layout) -> Path:
    if layout == "colcon":
        return Path(os.environ["ROI_CODEC_EXPECT_PREFIX"]).resolve()
    return Path(sys.prefix).resolve()


def _within(path: str | os.PathLike, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root)


def _node_module_file() -> str:
    # where `import roi_codec_ros.nodes.encoder_node` would load it from, without importing torch & co.
    return importlib.util.find_spec("roi_codec_ros.nodes.encoder_node").origin


def test_python_package_messages_and_nodes_come_from_the_expected_place(layout, prefix):
    import roi_codec_ros
    import roi_codec_ros.msg

    assert hasattr(roi_codec_ros, "__version__"), "rosidl's empty __init__.py is installed instead of ours"
    assert _within(roi_codec_ros.msg.__file__, prefix), roi_codec_ros.msg.__file__
    package_root = prefix if layout == "colcon" else REPO
    assert _within(roi_codec_ros.__file__, package_root), roi_codec_ros.__file__
    assert _within(_node_module_file(), package_root), _node_module_file()
    if layout == "colcon":
        # one directory holds both, merged by CMakeLists.txt's install(DIRECTORY)
        assert Path(roi_codec_ros.msg.__file__).resolve().parent.parent == Path(roi_codec_ros.__file__).resolve().parent


def test_ament_index_executables_launch_and_config(prefix):
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    assert Path(get_package_prefix("roi_codec_ros")).resolve() == prefix
    share = Path(get_package_share_directory("roi_codec_ros"))
    for name in ("package.xml", "launch/pipeline.launch.py", "config/encoder.yaml"):
        assert (share / name).is_file(), share / name
    for exe in EXECUTABLES:
        path = prefix / "lib" / "roi_codec_ros" / exe
        assert os.access(path, os.X_OK), f"{path} missing or not executable (ros2 run/launch look there)"


def test_executables_run_the_installed_package_in_a_fresh_process(prefix, layout, tmp_path):
    """The executable's interpreter finds the node module and loads the messages with their type support,
    from a neutral working directory (a source checkout in the cwd would shadow the install).  The real
    import of the nodes from a colcon install is in test_packaging.py."""
    exe = prefix / "lib" / "roi_codec_ros" / "encoder_node"
    interpreter = exe.read_text().splitlines()[0].removeprefix("#!").strip()
    assert "from roi_codec_ros.nodes.encoder_node import main" in exe.read_text()
    code = (
        "import importlib.util, roi_codec_ros.msg as m\n"
        "from rclpy.serialization import serialize_message, deserialize_message\n"
        "f = m.EncodedFrame(data=bytes(range(5)))\n"
        "assert bytes(deserialize_message(serialize_message(f), m.EncodedFrame).data) == bytes(range(5))\n"
        "print(importlib.util.find_spec('roi_codec_ros.nodes.encoder_node').origin); print(m.__file__)\n"
    )
    out = subprocess.run([interpreter, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    node_file, msg_file = out.stdout.split()[-2:]
    assert _within(msg_file, prefix), msg_file
    assert _within(node_file, prefix if layout == "colcon" else REPO), node_file


def test_every_interface_our_messages_use_resolves_through_the_ament_index(prefix):
    """What `ros2 interface show roi_codec_ros/msg/EncodedFrame` does: look up each referenced package's .msg
    in the ament index (it failed with "Unknown package 'std_msgs'" while the venv was not on AMENT_PREFIX_PATH)."""
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("roi_codec_ros"))
    definitions = sorted((share / "msg").glob("*.msg"))
    assert definitions, f"no .msg files in {share / 'msg'}"
    referenced = set()
    for definition in definitions:
        for line in definition.read_text().splitlines():
            match = re.match(r"\s*([A-Za-z0-9_]+)/([A-Za-z0-9_]+)", line.split("#")[0])
            if match:
                referenced.add(match.groups())
    assert ("std_msgs", "Header") in referenced
    for package, message in sorted(referenced):
        path = Path(get_package_share_directory(package)) / "msg" / f"{message}.msg"
        assert path.is_file(), f"{package}/msg/{message} not found through AMENT_PREFIX_PATH ({path})"
