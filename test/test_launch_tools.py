"""roi-launch and roi-param (dev/roi_codec_devtools), the pip-only stand-ins for `ros2 launch` / `ros2 param`.

roi-launch has two paths and both are tested explicitly, whether or not a real ``launch`` is importable here:
the stand-in (``launch_shim``, forced by running from a directory whose ``launch/`` folder is a namespace
package, as this repository's is) and the hand-over to ``launch.LaunchService`` (a recording fake ``launch``
on PYTHONPATH).  roi-param runs against a live rclpy node started by this file (``python test_launch_tools.py
param_node NAME READY_FILE``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ros_helpers import ros_env

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
TIMEOUT_S = 120.0


def _launch(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roi_codec_devtools.launch_runner", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env or dict(os.environ), cwd=cwd)


def _params_files(stdout: str) -> dict[str, str]:
    """--dry-run prints each node's command line, then each of its temporary parameter files as '# <path>:'
    followed by the file's YAML."""
    files, current = {}, None
    for line in stdout.splitlines():
        if " --ros-args" in line:
            current = None
        elif line.startswith("# ") and line.endswith(":"):
            current = line[2:-1]
            files[current] = ""
        elif current is not None:
            files[current] += line + "\n"
    return files


def _commands(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if " --ros-args" in line]


# -- roi-launch: the stand-in, on the package's real launch files ----------------------------------------------------
def test_launch_runner_dry_run_builds_ros_command_lines():
    result = _launch("roi_codec_ros", "pipeline.launch.py", "--dry-run", "namespace:=cam", "fps:=3", "model_path:=random",
                     "input:=/data/clip.mp4")
    assert result.returncode == 0, result.stdout + result.stderr
    commands = _commands(result.stdout)
    assert [Path(c.split()[0]).name for c in commands] == ["frame_source", "encoder_node", "decoder_node"]
    encoder = commands[1]
    assert "-r __node:=encoder -r __ns:=/cam" in encoder
    assert "share/roi_codec_ros/config/encoder.yaml" in encoder
    assert encoder.index("encoder.yaml") < encoder.index("launch_params_")  # files in order: later wins
    files = list(_params_files(result.stdout).values())
    assert len(files) == 3, result.stdout
    # keyed by the node's full name, as launch_ros does when name and namespace are given (not '/**')
    assert [text.splitlines()[0] for text in files] == ["/cam/frame_source:", "/cam/encoder:", "/cam/decoder:"]
    assert "    fps: 3\n" in files[0] and "    input: /data/clip.mp4\n" in files[0]  # YAML-typed, as launch_ros
    assert "    model_path: random\n" in files[1]


def test_launch_runner_arguments_and_errors(tmp_path):
    shown = _launch("roi_codec_ros", "encoder.launch.py", "--show-args")
    assert shown.returncode == 0 and "'model_path':" in shown.stdout, shown.stdout + shown.stderr
    # the text ros2 launch --show-args prints: launch's describe() of each default (quotes and all)
    assert "(default: PathJoin('FindPackageShare(pkg='roi_codec_ros') + 'config' + 'encoder.yaml''))" in shown.stdout
    assert "(default: 'random')" in shown.stdout or "(default: 'default')" in shown.stdout
    missing = _launch("roi_codec_ros", "nope.launch.py")
    assert missing.returncode == 2 and "was not found in the share directory" in missing.stdout
    custom = tmp_path / "required.launch.py"
    custom.write_text(
        "from launch import LaunchDescription\n"
        "from launch.actions import DeclareLaunchArgument\n"
        "from launch.substitutions import LaunchConfiguration\n"
        "from launch_ros.actions import Node\n"
        "def generate_launch_description():\n"
        "    return LaunchDescription([DeclareLaunchArgument('x', description='needed'),\n"
        "        Node(package='roi_codec_ros', executable='encoder_node', parameters=[{'rate': LaunchConfiguration('x')}])])\n"
    )
    assert "missing required launch argument 'x'" in _launch(str(custom)).stdout
    empty = _launch(str(custom), "--dry-run", "x:=")
    assert empty.returncode == 2 and "empty value" in empty.stdout  # launch_ros rejects it the same way
    assert "'x':\n        needed\n" in _launch(str(custom), "--show-args").stdout  # required: no default line


def _write_launch(path: Path, nodes: str) -> Path:
    path.write_text(textwrap.dedent("""\
        import sys
        from launch import LaunchDescription
        from launch.actions import DeclareLaunchArgument
        from launch.substitutions import LaunchConfiguration
        from launch_ros.actions import Node

        def generate_launch_description():
            return LaunchDescription([
                DeclareLaunchArgument('ns', default_value='robot', description='namespace'),
        """) + textwrap.indent(textwrap.dedent(nodes), " " * 8) + "    ])\n")
    return path


def test_shim_params_files_and_remaps_as_launch_ros(tmp_path):
    launch_file = _write_launch(tmp_path / "params.launch.py", """\
        Node(executable=sys.executable, arguments=['-c', 'pass'], name='talker', namespace=LaunchConfiguration('ns'),
             parameters=[{'gain': LaunchConfiguration('gain', default='2.5'), 'nested': {'depth': 2}}],
             remappings=[('image', LaunchConfiguration('image', default='/cam/image_raw'))]),
        Node(executable=sys.executable, arguments=['-c', 'pass'], name='listener', parameters=[{'x': 1}]),
    """)
    result = _launch(str(launch_file), "--dry-run", "image:=/front/image_raw")
    assert result.returncode == 0, result.stdout + result.stderr
    talker, listener = _commands(result.stdout)
    assert "-r __node:=talker -r __ns:=/robot" in talker and talker.endswith("-r image:=/front/image_raw")
    first, second = _params_files(result.stdout).values()
    assert first == "/robot/talker:\n  ros__parameters:\n    gain: 2.5\n    nested.depth: 2\n"
    assert second.splitlines()[0] == "/**:"  # no namespace given: launch_ros keys by '/**' too
    root = _launch(str(launch_file), "--dry-run", "ns:=")
    assert "-r __ns:=/ " in _commands(root.stdout)[0]  # '' is the root namespace
    assert list(_params_files(root.stdout).values())[0].startswith("/talker:\n")


def test_shim_exit_status_node_died_and_stopped(tmp_path):
    died = _write_launch(tmp_path / "died.launch.py", """\
        Node(executable=sys.executable, arguments=['-c', 'import sys; sys.exit(3)'], name='crasher'),
        Node(executable=sys.executable, arguments=['-c', 'pass'], name='fine'),
    """)
    result = _launch(str(died))
    assert result.returncode == 1, result.stdout + result.stderr  # a node died on its own: 1, as documented
    assert "exit code 3" in result.stdout and "process has died" in result.stdout

    waits = _write_launch(tmp_path / "waits.launch.py", """\
        Node(executable=sys.executable, name='waiter', arguments=['-c',
             'import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(0)); print("ready", flush=True); time.sleep(60)']),
    """)
    proc = subprocess.Popen([sys.executable, "-m", "roi_codec_devtools.launch_runner", str(waits)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.rstrip().endswith("] ready"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(TIMEOUT_S), "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT_S) == 0, "".join(lines)  # stopped by roi-launch: clean
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "sending SIGINT to all processes" in "".join(lines)


# -- roi-launch: hand-over to the real launch (a recording fake) -------------------------------------------------------
FAKE_LAUNCH = {
    "launch/__init__.py": '''
        """Recording fake of ROS 2 launch: what roi-launch hands to LaunchService, and scripted process events."""
        import json, os

        from . import actions, event_handlers, launch_description_sources  # noqa: F401

        def record(**entry):
            with open(os.environ["FAKE_LAUNCH_RECORD"], "a") as f:
                f.write(json.dumps(entry) + "\\n")

        class LaunchContext:
            pass

        class LaunchDescription:
            def __init__(self, entities=()):
                self.entities = list(entities)

            def get_launch_arguments(self):
                return [e for e in self.entities if isinstance(e, actions.DeclareLaunchArgument)]

        class ProcessExited:
            def __init__(self, returncode, process_name):
                self.returncode, self.process_name = returncode, process_name

        class LaunchService:
            def __init__(self, *, argv=()):
                record(call="LaunchService", argv=list(argv))
                self.descriptions = []

            def include_launch_description(self, description):
                self.descriptions.append(description)

            def run(self):
                entities = [e for d in self.descriptions for e in d.entities]
                handlers = [e.handler for e in entities if isinstance(e, actions.RegisterEventHandler)]
                includes = [[e.source.path, e.launch_arguments] for e in entities if isinstance(e, actions.IncludeLaunchDescription)]
                record(call="run", includes=includes, handlers=sorted(type(h).__name__ for h in handlers))
                scenario = os.environ["FAKE_LAUNCH_SCENARIO"]
                events = {"clean": [("exit", 0), ("shutdown", 0)], "died": [("exit", 3), ("shutdown", 0)],
                          "stopped": [("shutdown", 0), ("exit", -2)], "error": []}[scenario]
                for kind, code in events:
                    for h in handlers:
                        if kind == "exit" and isinstance(h, event_handlers.OnProcessExit):
                            h.on_exit(ProcessExited(code, "talker-1"), LaunchContext())
                        if kind == "shutdown" and isinstance(h, event_handlers.OnShutdown):
                            h.on_shutdown(object(), LaunchContext())
                return 1 if scenario == "error" else 0
    ''',
    "launch/actions.py": '''
        class IncludeLaunchDescription:
            def __init__(self, source, *, launch_arguments=()):
                self.source, self.launch_arguments = source, [list(a) for a in launch_arguments]

        class RegisterEventHandler:
            def __init__(self, handler):
                self.handler = handler

        class DeclareLaunchArgument:
            def __init__(self, name, default_value=None, description=""):
                self.name, self.default_value, self.description = name, default_value, description
    ''',
    "launch/event_handlers.py": '''
        class OnProcessExit:
            def __init__(self, *, on_exit):
                self.on_exit = on_exit

        class OnShutdown:
            def __init__(self, *, on_shutdown):
                self.on_shutdown = on_shutdown
    ''',
    "launch/launch_description_sources.py": '''
        class Text:
            def __init__(self, text):
                self.text = text

            def describe(self):
                return "'" + self.text + "'"

            def __repr__(self):
                return "<launch.substitutions.TextSubstitution object at 0x7f00>"

        class AnyLaunchDescriptionSource:
            def __init__(self, path):
                self.path = path

            def get_launch_description(self, context):
                import launch
                from launch.actions import DeclareLaunchArgument as Arg
                return launch.LaunchDescription([
                    Arg("model_path", [Text("default")], "codec model"),
                    Arg("params_file", [Text("/share/"), Text("encoder.yaml")], "parameters"),
                    Arg("required", None, "no default"),
                ])
    ''',
    "launch_ros/__init__.py": '"""Recording fake of launch_ros (only its presence matters)."""\n',
}


@pytest.fixture()
def fake_launch(tmp_path):
    root = tmp_path / "fake_site"
    for name, text in FAKE_LAUNCH.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    launch_file = tmp_path / "any.launch.py"
    launch_file.write_text("raise AssertionError('the fake launch must not execute the file')\n")
    record = tmp_path / "record.jsonl"

    def run(*args, scenario="clean"):
        env = dict(os.environ, PYTHONPATH=str(root), FAKE_LAUNCH_RECORD=str(record), FAKE_LAUNCH_SCENARIO=scenario)
        record.unlink(missing_ok=True)
        result = _launch(str(launch_file), *args, cwd=tmp_path, env=env)
        calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
        return result, calls

    run.launch_file = launch_file
    return run


def test_real_launch_hand_over_runs_launch_service(fake_launch):
    result, calls = fake_launch("a:=1", "namespace:=cam")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls[0] == {"call": "LaunchService", "argv": ["a:=1", "namespace:=cam"]}
    assert calls[1]["includes"] == [[str(fake_launch.launch_file), [["a", "1"], ["namespace", "cam"]]]]
    assert calls[1]["handlers"] == ["OnProcessExit", "OnShutdown"]


@pytest.mark.parametrize("scenario, status", [("died", 1), ("stopped", 0), ("error", 1)])
def test_real_launch_exit_status(fake_launch, scenario, status):
    """A node exiting non-zero before shutdown -> 1 (ros2 launch would say 0); exits during shutdown do not
    count; launch's own failure status passes through."""
    result, calls = fake_launch(scenario=scenario)
    assert result.returncode == status, result.stdout + result.stderr
    assert [c["call"] for c in calls] == ["LaunchService", "run"]
    assert ("talker-1 (exit code 3)" in result.stdout) == (scenario == "died")


def test_real_launch_show_args_prints_descriptions_not_reprs(fake_launch):
    result, calls = fake_launch("--show-args")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "object at 0x" not in result.stdout
    assert "    'model_path':\n        codec model\n        (default: 'default')" in result.stdout
    assert "(default: '/share/' + 'encoder.yaml')" in result.stdout
    assert "    'required':\n        no default\n" in result.stdout and result.stdout.count("(default:") == 2
    assert calls == []  # nothing launched
    dry, _ = fake_launch("--dry-run")
    assert dry.returncode == 2 and "--dry-run needs the shim" in dry.stdout


# -- roi-param --------------------------------------------------------------------------------------------------------
def test_param_cli_value_conversion():
    from rcl_interfaces.msg import ParameterType as T

    from roi_codec_devtools.param_cli import ParamError, to_parameter_value, value_of

    assert value_of(to_parameter_value(1, T.PARAMETER_DOUBLE)) == 1.0
    assert value_of(to_parameter_value([0, 0, 5, 5.5], T.PARAMETER_DOUBLE_ARRAY)) == [0.0, 0.0, 5.0, 5.5]
    assert value_of(to_parameter_value([], T.PARAMETER_DOUBLE_ARRAY)) == []
    assert value_of(to_parameter_value(["car", 2], T.PARAMETER_STRING_ARRAY)) == ["car", "2"]
    assert value_of(to_parameter_value(True, T.PARAMETER_BOOL)) is True
    with pytest.raises(ParamError, match="not a string"):
        to_parameter_value(3, T.PARAMETER_STRING)


def role_param_node(name: str, ready_file: str, *ros_args: str) -> int:
    """A node with parameters of each kind the project uses: ranged double and int, read-only string, arrays."""
    import rclpy
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=["--ros-args", *ros_args])
    node = rclpy.create_node(name)
    node.declare_parameter("rate", 0.5, ParameterDescriptor(
        description="rate knob", floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)]))
    node.declare_parameter("count", 3, ParameterDescriptor(integer_range=[IntegerRange(from_value=0, to_value=10, step=0)]))
    node.declare_parameter("model_path", "default", ParameterDescriptor(description="model file", read_only=True))
    node.declare_parameter("roi.classes", ["car", "person"])
    # dynamically typed, as the encoder's static boxes (a double array, or the string 'none')
    node.declare_parameter("roi.static_boxes", [0.0, 0.0, 10.0, 10.0], ParameterDescriptor(dynamic_typing=True))
    Path(ready_file).write_text("ready")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


class _ParamNode:
    def __init__(self, tmp_path: Path, name: str, *ros_args: str):
        self.env = ros_env(tmp_path)
        ready = tmp_path / f"{name}_{time.monotonic_ns()}.ready"
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(HERE), "param_node", name, str(ready), *ros_args],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), f"node did not start:\n{self.log.read_text()}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def param(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "roi_codec_devtools.param_cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)


def test_param_cli_list_describe_set_dump_and_load_the_dump(tmp_path):
    import yaml

    name = f"params_{os.getpid()}"
    node = _ParamNode(tmp_path, name)
    try:
        listed = node.param("list", f"/{name}", "--timeout", "60")
        rate = node.param("describe", f"/{name}", "rate")
        model = node.param("describe", f"/{name}", "model_path")
        count = node.param("describe", f"/{name}", "count")
        undeclared = node.param("describe", f"/{name}", "nope")
        set_rate = node.param("set", f"/{name}", "rate", "0.25")
        set_classes = node.param("set", f"/{name}", "roi.classes", "[bus]")
        read_only = node.param("set", f"/{name}", "model_path", "other.pt")
        boxes = node.param("set", f"/{name}", "roi.static_boxes", "[0, 0, 5, 5]")  # ints -> the current double array
        nan = node.param("set", f"/{name}", "roi.static_boxes", "[nan, 0, 1, 1]")  # YAML: 'nan' is a string
        dump = node.param("dump", f"/{name}")
        none = node.param("set", f"/{name}", "roi.static_boxes", "none")  # dynamic: another type is sent as is
        none_value = node.param("get", f"/{name}", "roi.static_boxes")
    finally:
        node.stop()
    assert listed.returncode == 0, listed.stdout + listed.stderr + node.log.read_text()
    # rclpy declares the last two itself
    assert listed.stdout.splitlines() == [f"/{name}:", "  count", "  model_path", "  rate", "  roi.classes",
                                          "  roi.static_boxes", "  start_type_description_service", "  use_sim_time"]
    assert rate.stdout.splitlines() == ["Parameter name: rate", "  Type: double", "  Description: rate knob",
                                        "  Constraints:", "    Min value: 0.0", "    Max value: 1.0"]
    assert "  Type: string" in model.stdout and "    Read only: true" in model.stdout
    assert "    Min value: 0\n    Max value: 10" in count.stdout
    assert undeclared.returncode == 1 and "Parameter not declared: nope" in undeclared.stderr
    assert set_rate.returncode == 0 and set_rate.stdout.strip() == "Set parameter successful"
    assert set_classes.returncode == 0, set_classes.stderr
    assert read_only.returncode == 1 and "read-only" in read_only.stderr.lower()
    assert boxes.returncode == 0, boxes.stderr
    assert nan.returncode == 1 and "not a ROS parameter value" in nan.stderr and "Traceback" not in nan.stderr, nan.stderr
    assert none.returncode == 0 and none_value.stdout.strip() == "String value is: none", none.stderr + none_value.stdout
    assert dump.returncode == 0, dump.stderr
    dumped = yaml.safe_load(dump.stdout)
    assert dumped == {f"/{name}": {"ros__parameters": {
        "count": 3, "model_path": "default", "rate": 0.25, "start_type_description_service": True, "use_sim_time": False,
        "roi": {"classes": ["bus"], "static_boxes": [0.0, 0.0, 5.0, 5.0]}}}}

    # the dump is a params file: a restarted node starts from it (what `ros2 param load` / --params-file do)
    params_file = tmp_path / "dump.yaml"
    params_file.write_text(dump.stdout)
    again = _ParamNode(tmp_path, name, "--params-file", str(params_file))
    try:
        rate_again = again.param("get", f"/{name}", "rate", "--timeout", "60")
        classes_again = again.param("get", f"/{name}", "roi.classes")
    finally:
        again.stop()
    assert rate_again.stdout.strip() == "Double value is: 0.25", rate_again.stdout + rate_again.stderr
    assert classes_again.stdout.strip() == "String values are: ['bus']", classes_again.stdout + classes_again.stderr


def test_param_cli_node_not_found(tmp_path):
    env = ros_env(tmp_path)
    missing = subprocess.run([sys.executable, "-m", "roi_codec_devtools.param_cli", "list", f"/absent_{os.getpid()}",
                              "--timeout", "2"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert missing.returncode == 2 and "not found" in missing.stderr


if __name__ == "__main__":
    roles = {"param_node": role_param_node}
    sys.exit(roles[sys.argv[1]](*sys.argv[2:]))
