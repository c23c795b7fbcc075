"""The package as ROS and pip see it (docs/packaging.md): colcon build + colcon test of a workspace holding this
checkout, imports from that colcon install, colcon's view of the repository, package.xml against the code's
imports, the split requirements, and scripts/env.sh's AMENT_PREFIX_PATH.

The colcon build uses the ROS 2 Kilted wheels of the pip-only venv as the underlay (AMENT_PREFIX_PATH) and colcon
from requirements/ros-kilted.txt, exactly as a workspace over /opt/ros/kilted would use the system's ROS.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]
COLCON_TIMEOUT_S = 900  # a cold build on a loaded 2-core machine took 2 min


def _colcon() -> list[str]:
    if shutil.which("colcon") is None:
        pytest.fail("colcon is not installed (requirements/ros-kilted.txt; run scripts/setup.sh)")
    return ["colcon"]


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} -> {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    return result


def _source_files() -> list[str]:
    """This checkout's files as a clone would have them (tracked + new, not ignored: no .venv, runs/, build/)."""
    out = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


# -- colcon -----------------------------------------------------------------------------------------------------
def test_colcon_build_test_and_import_from_the_install(tmp_path):
    """The README's workspace recipe: the package in ws/src, colcon build, colcon test, then from
    `source install/setup.bash` the nodes and messages import from install/, not from the checkout or the venv.
    (A workspace is needed anyway: CMake refuses exported include dirs inside the source tree, and the venv's
    numpy headers are inside this checkout.)"""
    colcon = _colcon()
    venv = os.environ.get("VIRTUAL_ENV")
    assert venv, "run inside the project venv (. scripts/env.sh)"
    ws = tmp_path / "ws"
    src = ws / "src" / "roi_codec_ros"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    env = dict(os.environ, AMENT_PREFIX_PATH=venv, CMAKE_PREFIX_PATH=venv)
    env.pop("PYTHONPATH", None)
    common = ["--build-base", str(ws / "build"), "--install-base", str(ws / "install")]
    listed = _run([*colcon, "list", "--base-paths", str(ws / "src")], env=env, cwd=ws).stdout
    assert listed.split() == ["roi_codec_ros", str(src), "(ros.ament_cmake)"], listed
    _run([*colcon, "--log-base", str(ws / "log"), "build", "--base-paths", str(ws / "src"), *common,
          "--event-handlers", "console_cohesion+",
          "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DPython3_FIND_VIRTUALENV=ONLY"],
         env=env, cwd=ws, timeout=COLCON_TIMEOUT_S)
    # colcon test runs test/test_install_layout.py inside the install's environment (CMakeLists.txt)
    _run([*colcon, "--log-base", str(ws / "log"), "test", "--base-paths", str(ws / "src"), *common],
         env=env, cwd=ws, timeout=COLCON_TIMEOUT_S)
    results = _run([*colcon, "test-result", "--test-result-base", str(ws / "build"), "--verbose"], env=env, cwd=ws)
    summary = re.search(r"Summary: (\d+) tests, (\d+) errors, (\d+) failures, (\d+) skipped", results.stdout)
    assert summary and int(summary[1]) >= 4 and summary.groups()[1:] == ("0", "0", "0"), results.stdout

    install = ws / "install"
    check = (
        "import roi_codec_ros, roi_codec_ros.nodes.encoder_node as node\n"
        "from roi_codec_ros.msg import EncodedFrame\n"
        "import sys; print(roi_codec_ros.__file__, node.__file__, sys.modules[EncodedFrame.__module__].__file__)\n"
    )
    script = f'source "{install}/setup.bash" && cd "{tmp_path}" && python -c "$CHECK"'
    out = _run(["bash", "-c", script], env=dict(env, CHECK=check), timeout=300).stdout.split()
    assert len(out) == 3, out
    for path in out:
        assert Path(path).resolve().is_relative_to(install / "roi_codec_ros"), f"{path} is not from {install}"


def test_colcon_sees_one_ros_package_and_not_the_dev_tools():
    """colcon stops at the repository root's package.xml; dev/roi_codec_devtools also carries COLCON_IGNORE, so
    even a crawl started inside dev/ finds no package there."""
    colcon = _colcon()
    listed = _run([*colcon, "list", "--base-paths", str(REPO)], cwd=REPO).stdout.split("\n")
    assert [line.split("\t")[0] for line in listed if line] == ["roi_codec_ros"], listed
    assert (REPO / "dev" / "roi_codec_devtools" / "COLCON_IGNORE").is_file()
    assert _run([*colcon, "list", "--base-paths", str(REPO / "dev")], cwd=REPO).stdout.strip() == ""


# -- package.xml ------------------------------------------------------------------------------------------------
# import name -> package.xml dependency (a ROS package or a rosdep key)
ROSDEP = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "cv2": "python3-opencv", "PIL": "python3-pil",
    "scipy": "python3-scipy", "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm",
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs",
    "builtin_interfaces": "builtin_interfaces", "ament_index_python": "ament_index_python",
    "launch": "launch", "launch_ros": "launch_ros",
    "pytest": "python3-pytest", "hypothesis": "python3-hypothesis",
}
# import name -> pip distribution in requirements/python.txt (no rosdep key with usable versions)
PIP_ONLY = {
    "torch": "torch", "torchvision": "torchvision", "compressai": "compressai", "ultralytics": "ultralytics",
    "av": "av", "rosbags": "rosbags", "pytorch_msssim": "pytorch-msssim", "tensorboard": "tensorboard",
    "atheris": "atheris", "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime",
}
# optional backends: imported only when asked for, never a dependency (docs/deployment.md says how to add them)
OPTIONAL = {"openvino"}
TEST_MODULES = {p.stem for p in (REPO / "test").glob("*.py")}


def _third_party_imports(files) -> dict[str, str]:
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "roi_codec_ros":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _package_xml() -> dict[str, set[str]]:
    root = ET.parse(REPO / "package.xml").getroot()
    deps: dict[str, set[str]] = {}
    for element in root:
        if element.tag.endswith("depend"):
            deps.setdefault(element.tag, set()).add(element.text.strip())
    return deps


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: '{line}' is not pinned as name==version"
            key = re.sub(r"[-_.]+", "-", name).lower()
            assert key not in pins, f"{path.name}: {name} pinned twice"
            pins[key] = version
    return pins


def test_package_xml_declares_what_the_code_imports():
    deps = _package_xml()
    runtime = deps.get("depend", set()) | deps.get("exec_depend", set())
    tests = runtime | deps.get("test_depend", set())
    python_pins = _pins(REPO / "requirements" / "python.txt")
    code = sorted((REPO / "roi_codec_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    for files, declared, kind in ((code, runtime, "exec_depend"), (sorted((REPO / "test").glob("*.py")), tests, "test_depend")):
        for module, where in sorted(_third_party_imports(files).items()):
            if module in PIP_ONLY:
                assert PIP_ONLY[module] in python_pins, f"{where} imports {module}: pin {PIP_ONLY[module]} in requirements/python.txt"
                continue
            if module in OPTIONAL or module in TEST_MODULES or module == "roi_codec_devtools":
                continue  # test/ modules, and the pip-only dev tools (dev/, not a dependency of the package)
            assert module in ROSDEP, f"{where} imports {module}: add its rosdep key to package.xml (and to ROSDEP here)"
            assert ROSDEP[module] in declared, f"{where} imports {module}: package.xml needs <{kind}>{ROSDEP[module]}</{kind}>"


# -- requirements -----------------------------------------------------------------------------------------------
ROS_BUILD_TOOLS = {"cmake", "catkin-pkg", "empy", "lark-parser", "docutils", "setuptools"}


def test_requirements_split_ros_wheels_from_the_rest():
    """requirements/python.txt is what a colcon workspace over an apt ROS installs: no ROS wheel, no ROS build
    tool, no colcon.  requirements.lock (pip-only setup) is exactly the two files, so each pin lives once."""
    python = _pins(REPO / "requirements" / "python.txt")
    ros = _pins(REPO / "requirements" / "ros-kilted.txt")
    rosish = [n for n in python if n.startswith(("ros-", "colcon")) or n in ROS_BUILD_TOOLS]
    assert not rosish, f"requirements/python.txt must not install ROS wheels or ROS build tools: {rosish}"
    assert not set(python) & set(ros), f"pinned in both files: {sorted(set(python) & set(ros))}"
    assert {"ros-kilted-rclpy", "ros-kilted-std-msgs", "colcon-common-extensions", "ros-kilted-ament-cmake-pytest"} <= set(ros)
    assert {"torch", "compressai", "ultralytics", "av", "rosbags"} <= set(python)
    lock = [line.strip() for line in (REPO / "requirements.lock").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert lock == ["-r requirements/python.txt", "-r requirements/ros-kilted.txt"], lock


def test_venv_has_the_pinned_versions():
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("not running in this checkout's pip-only venv")
    import importlib.metadata as md

    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in md.distributions()}
    wanted = {**_pins(REPO / "requirements" / "python.txt"), **_pins(REPO / "requirements" / "ros-kilted.txt")}
    wrong = {n: (v, installed.get(n)) for n, v in wanted.items() if installed.get(n) != v}
    assert not wrong, f"pinned vs installed (run scripts/setup.sh): {wrong}"


# -- scripts/env.sh ---------------------------------------------------------------------------------------------
def test_env_sh_puts_the_wheels_prefix_on_ament_prefix_path():
    """`ros2 interface show roi_codec_ros/msg/EncodedFrame` resolves std_msgs through AMENT_PREFIX_PATH; the
    wheels' packages and ours are both in the venv prefix."""
    if not (REPO / ".venv" / "bin" / "python").is_file():
        pytest.skip("no pip-only venv in this checkout")
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "VIRTUAL_ENV", "PYTHONPATH")}
    code = ("from ament_index_python.packages import get_package_prefix as p; "
            "print(p('std_msgs')); print(p('rcl_interfaces')); print(p('roi_codec_ros'))")
    out = _run(["bash", "-c", f'. "{REPO}/scripts/env.sh" && echo "$AMENT_PREFIX_PATH" && python -c "{code}"'],
               env=env, cwd="/", timeout=120).stdout.split()
    venv = (REPO / ".venv").resolve()
    assert [Path(p).resolve() for p in out[0].split(":")] == [venv], out[0]
    assert [Path(p).resolve() for p in out[1:]] == [venv] * 3, out
