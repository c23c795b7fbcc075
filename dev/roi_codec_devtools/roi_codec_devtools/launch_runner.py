"""``roi-launch``: run a ROS 2 Python launch file where ``ros2 launch`` is not installed (pip-only setup).

    roi-launch <package> <file.launch.py> [name:=value ...]     # as `ros2 launch`
    roi-launch <path/to/file.launch.py> [name:=value ...]
    roi-launch ... --show-args      # declared arguments, defaults and descriptions (as `ros2 launch --show-args`)
    roi-launch ... --dry-run        # print the commands (and generated parameter files), start nothing (stand-in only)

If the real ``launch`` and ``launch_ros`` packages are importable, the file is run by them (``LaunchService``
with an ``IncludeLaunchDescription``, what ``ros2 launch`` does).  Otherwise small stand-ins (``launch_shim/``
beside this file, put on ``sys.path`` only inside this process) evaluate ``generate_launch_description()`` with
launch's semantics for this subset: ``LaunchDescription``, ``DeclareLaunchArgument`` (default, description,
choices), ``LaunchConfiguration``, ``TextSubstitution``, ``PathJoinSubstitution``, ``EnvironmentVariable``,
``IfCondition``/``UnlessCondition``, ``LogInfo``, ``OpaqueFunction``, ``launch_ros.actions.Node`` (package/executable from
``<prefix>/lib/<package>``, name, namespace, parameters as files or dicts, remappings, arguments, ros_arguments)
and ``FindPackageShare``/``FindPackagePrefix``.  Anything else fails with ``NotImplementedError``.  Each node
runs as a subprocess with its output prefixed ``[executable-N]``; Ctrl-C/SIGTERM sends SIGINT to every node,
then SIGTERM after 5 s and SIGKILL after 5 s more (launch's defaults).

Exit status, on both paths: 0 when every node exited cleanly or was stopped by roi-launch, 1 when a node died
on its own (non-zero exit before shutdown began; ``ros2 launch`` itself returns 0 then), 2 on launch-file
errors (the real ``launch`` reports those itself and returns its own status).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "launch_shim"
SIGTERM_TIMEOUT_S = 5.0
SIGKILL_TIMEOUT_S = 5.0


def log(message: str, level: str = "INFO") -> None:
    print(f"[{level}] [launch]: {message}", flush=True)


def real_launch_available() -> bool:
    """True when the real launch and launch_ros packages are importable (regular packages, not folders)."""
    for name in ("launch", "launch_ros"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return False
        if spec is None or spec.origin is None:  # a namespace package (e.g. a ./launch folder) is not launch
            return False
    return not getattr(__import__("launch"), "ROI_CODEC_ROS_SHIM", False)


def install_shim() -> None:
    for name in [m for m in sys.modules if m == "launch" or m.startswith(("launch.", "launch_ros"))]:
        del sys.modules[name]  # e.g. a namespace package picked up from a ./launch folder
    sys.path.insert(0, str(SHIM_DIR))


def find_launch_file(package_or_path: str, file_name: str | None) -> Path:
    if file_name is None:
        path = Path(package_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"launch file {path} not found")
        return path.resolve()
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory(package_or_path))
    except PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"package '{package_or_path}' not found on AMENT_PREFIX_PATH (source scripts/env.sh; run scripts/build_msgs.sh)"
        ) from exc
    matches = sorted(p for p in share.rglob(file_name) if p.is_file())
    if not matches:
        raise FileNotFoundError(f"file '{file_name}' was not found in the share directory of package '{package_or_path}' ({share})")
    return matches[0]


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments look like name:=value, got '{item}'")
        out[name] = value
    return out


def load_description(path: Path):
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "generate_launch_description"):
        raise AttributeError(f"{path} has no generate_launch_description()")
    return module.generate_launch_description()


def print_arguments(description) -> None:
    """What ``ros2 launch --show-args`` prints (ros2launch.api.print_arguments_of_launch_description).

    Works on a real ``launch.LaunchDescription`` and on the stand-in's: defaults are lists of substitutions,
    shown with their ``describe()`` text, e.g. ``PathJoin('FindPackageShare(pkg='roi_codec_ros') + ...')``.
    """
    print("Arguments (pass arguments as '<name>:=<value>'):")
    arguments = description.get_launch_arguments()
    conditional = False
    for arg in arguments:
        star = "*" if getattr(arg, "_conditionally_included", False) else ""
        conditional = conditional or bool(star)
        text = f"\n    '{arg.name}':{star}\n        {arg.description}"
        if arg.default_value is not None:
            text += "\n        (default: {})".format(" + ".join(token.describe() for token in arg.default_value))
        if getattr(arg, "choices", None):
            text += "\n        Valid choices are: {}".format(list(arg.choices))
        print(text)
    if not arguments:
        print("\n  No arguments.")
    elif conditional:
        print("\n* argument(s) which are only used if specific conditions occur")


# -- with the real launch -----------------------------------------------------------------------------
def run_with_real_launch(path: Path, arguments: dict[str, str], show_args: bool) -> int:
    """Hand the file to launch.LaunchService as ros2launch.api.launch_a_launch_file does.

    Two event handlers record whether a process exited non-zero before shutdown began (a node that died on
    its own), so the exit status follows this tool's contract (1) rather than ros2 launch's (0).
    """
    import launch
    from launch.actions import IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    if show_args:
        print_arguments(AnyLaunchDescriptionSource(str(path)).get_launch_description(launch.LaunchContext()))
        return 0
    died: list[str] = []
    shutting_down = []

    def on_exit(event, _context):
        if event.returncode != 0 and not shutting_down:
            died.append(f"{event.process_name} (exit code {event.returncode})")

    def on_shutdown(_event, _context):
        shutting_down.append(True)

    service = launch.LaunchService(argv=[f"{k}:={v}" for k, v in arguments.items()])
    service.include_launch_description(
        launch.LaunchDescription([
            RegisterEventHandler(OnShutdown(on_shutdown=on_shutdown)),
            RegisterEventHandler(OnProcessExit(on_exit=on_exit)),
            IncludeLaunchDescription(AnyLaunchDescriptionSource(str(path)), launch_arguments=list(arguments.items())),
        ])
    )
    status = service.run()
    if status == 0 and died:
        log(f"node(s) died: {', '.join(died)}", "ERROR")
        return 1
    return status


# -- with the shim ----------------------------------------------------------------------------------------
def plan_processes(description, arguments: dict[str, str]) -> list:
    """Execute the description's actions in order; returns the ProcessSpecs of the nodes to start."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch_ros.actions import Node

    context = LaunchContext(arguments)
    declared = {a.name for a in description.get_launch_arguments()}
    for name in sorted(set(arguments) - declared):
        log(f"argument '{name}' is not declared by the launch file (kept as a launch configuration)", "WARNING")
    specs = []

    def execute(entities) -> None:
        for entity in entities:
            if not isinstance(entity, (DeclareLaunchArgument, LogInfo, Node, OpaqueFunction)):
                raise NotImplementedError(f"{type(entity).__name__} is not supported by roi-launch's shim")
            if not entity.enabled(context):
                continue
            result = entity.execute(context)
            if isinstance(entity, OpaqueFunction):
                execute(result)  # the actions it returned run next, in order (as launch does)
            elif result is not None:
                specs.append(result)

    execute(description.entities)
    return specs


class ProcessGroup:
    """Run node processes, prefix their output, forward signals, stop them as launch does."""

    def __init__(self, specs):
        self.specs = specs
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def _pump(self, label: str, stream) -> None:
        for line in iter(stream.readline, b""):
            sys.stdout.write(f"[{label}] {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()

    def start(self) -> None:
        counts: dict[str, int] = {}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for spec in self.specs:
            counts[spec.label_base] = counts.get(spec.label_base, 0) + 1
            label = f"{spec.label_base}-{counts[spec.label_base]}"
            proc = subprocess.Popen(spec.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            log(f"process started with pid [{proc.pid}]: {label}")
            threading.Thread(target=self._pump, args=(label, proc.stdout), daemon=True).start()
            self.procs.append((label, proc))

    def request_stop(self, *_args) -> None:
        if not self.stopping:
            self.stopping = True
            log("sending SIGINT to all processes")
            for _, proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)

    def wait(self) -> int:
        reported: set[int] = set()
        died = False
        stop_started = None
        while True:
            for label, proc in self.procs:
                code = proc.poll()
                if code is not None and proc.pid not in reported:
                    reported.add(proc.pid)
                    if code == 0 or (self.stopping and code in (-signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL)):
                        log(f"process has finished cleanly [pid {proc.pid}]: {label}")
                    else:
                        died = died or not self.stopping
                        log(f"process has died [pid {proc.pid}, exit code {code}]: {label}", "ERROR")
            if len(reported) == len(self.procs):
                return 1 if died else 0
            if self.stopping:
                stop_started = stop_started or time.monotonic()
                waited = time.monotonic() - stop_started
                for _, proc in self.procs:
                    if proc.poll() is None and waited > SIGTERM_TIMEOUT_S + SIGKILL_TIMEOUT_S:
                        proc.kill()
                    elif proc.poll() is None and waited > SIGTERM_TIMEOUT_S and not getattr(proc, "_roi_termed", False):
                        proc._roi_termed = True
                        log(f"process [pid {proc.pid}] did not stop after SIGINT, sending SIGTERM", "WARNING")
                        proc.terminate()
            time.sleep(0.05)


def run_with_shim(path: Path, arguments: dict[str, str], show_args: bool, dry_run: bool) -> int:
    install_shim()
    description = load_description(path)
    if show_args:
        print_arguments(description)
        return 0
    specs = plan_processes(description, arguments)
    if dry_run:
        for spec in specs:
            print(" ".join(spec.cmd))
            for temp in spec.temp_files:
                print(f"# {temp}:\n{Path(temp).read_text()}", end="")
                Path(temp).unlink()
        return 0
    group = ProcessGroup(specs)
    signal.signal(signal.SIGINT, group.request_stop)
    signal.signal(signal.SIGTERM, group.request_stop)
    log(f"All log files can be found below {os.environ.get('ROS_LOG_DIR', '~/.ros/log')}")
    try:
        group.start()
        return group.wait()
    finally:
        group.request_stop()
        for spec in specs:
            for temp in spec.temp_files:
                Path(temp).unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roi-launch", description="Run a ROS 2 launch file like `ros2 launch` (see module docstring for the subset)."
    )
    parser.add_argument("package_or_file", help="package name, or the path of a launch file")
    parser.add_argument("rest", nargs="*", help="[launch file name] [name:=value ...]")
    parser.add_argument("-s", "--show-args", action="store_true", help="show the launch file's arguments and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the node commands and exit (shim only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    rest = list(args.rest)
    file_name = None
    if not args.package_or_file.endswith(".py") and rest and ":=" not in rest[0]:
        file_name = rest.pop(0)
    try:
        path = find_launch_file(args.package_or_file, file_name)
        arguments = parse_launch_arguments(rest)
        if real_launch_available():
            if args.dry_run:
                log("--dry-run needs the shim; the real launch is installed (use `ros2 launch --print`)", "ERROR")
                return 2
            return run_with_real_launch(path, arguments, args.show_args)
        return run_with_shim(path, arguments, args.show_args, args.dry_run)
    except (FileNotFoundError, ValueError, AttributeError, NotImplementedError, TypeError, RuntimeError) as exc:
        log(f"{type(exc).__name__}: {exc}", "ERROR")
        return 2


if __name__ == "__main__":
    sys.exit(main())
