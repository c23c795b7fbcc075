"""Shim of launch_ros.actions.Node: the command line launch_ros would run, with the same parameter semantics.

    <prefix>/lib/<package>/<executable> [arguments] --ros-args [ros_arguments] -r __node:=<name> -r __ns:=<ns>
        --params-file <file> ... -r <from>:=<to> ...

Parameters: a path is passed as ``--params-file``; a dict is flattened ('.'-joined nested keys), substitution
values are parsed as YAML (so "0.7" becomes a double; an empty result is an error, as in launch_ros) and
written to a temporary ``launch_params_*`` file keyed by the node's full name (``/ns/name``) when both name
and namespace are given, else by ``/**``, exactly as launch_ros does.  Files are passed in the order given:
later wins.  An empty namespace is the root namespace (``-r __ns:=/``), as in launch_ros.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import yaml
from launch.core import Action, LaunchContext, Substitution, SubstitutionFailure, perform_substitutions

_SUPPORTED_OUTPUT = ("screen", "log", "both")


@dataclass
class ProcessSpec:
    """What the runner starts for one Node action."""

    label_base: str
    cmd: list[str]
    temp_files: list[str] = field(default_factory=list)


def _evaluate_value(context: LaunchContext, name: str, value):
    if isinstance(value, Substitution) or (isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Substitution)) for v in value) and any(isinstance(v, Substitution) for v in value)):
        loaded = yaml.safe_load(perform_substitutions(context, value))
        if loaded is None:
            raise SubstitutionFailure(f"parameter '{name}': substitution evaluated to an empty value (launch_ros rejects it too)")
        return loaded
    if isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_evaluate_value(context, name, v) for v in value]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items) and any(isinstance(v, float) for v in items):
            items = [float(v) for v in items]  # launch_ros makes mixed int/float lists doubles
        return items
    raise TypeError(f"parameter '{name}': unsupported value {value!r}")


def _flatten(context: LaunchContext, params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        name = prefix + perform_substitutions(context, key)
        if isinstance(value, dict):
            out.update(_flatten(context, value, name + "."))
        else:
            out[name] = _evaluate_value(context, name, value)
    return out


class Node(Action):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, output="log", emulate_tty=False, **kwargs):
        unsupported = set(kwargs) - {"condition"}
        if unsupported:
            raise NotImplementedError(f"launch_ros Node options {sorted(unsupported)} are not supported by roi-launch's shim")
        super().__init__(**kwargs)
        if output not in _SUPPORTED_OUTPUT:
            raise ValueError(f"output must be one of {_SUPPORTED_OUTPUT}, got {output!r}")
        self.executable, self.package, self.node_name, self.namespace = executable, package, name, namespace
        self.exec_name = exec_name
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.ros_arguments = list(ros_arguments or [])
        self.arguments = list(arguments or [])

    def _executable_path(self, context: LaunchContext) -> str:
        executable = perform_substitutions(context, self.executable)
        if self.package is None:
            return executable
        package = perform_substitutions(context, self.package)
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            prefix = get_package_prefix(package)
        except PackageNotFoundError as exc:
            raise SubstitutionFailure(f"package '{package}' not found on AMENT_PREFIX_PATH (run scripts/build_msgs.sh?)") from exc
        path = os.path.join(prefix, "lib", package, executable)
        if not os.access(path, os.X_OK):
            raise SubstitutionFailure(f"executable '{executable}' not found in package '{package}' ({path})")
        return path

    def execute(self, context: LaunchContext) -> ProcessSpec:
        cmd = [self._executable_path(context)] + [perform_substitutions(context, a) for a in self.arguments]
        ros_args = [perform_substitutions(context, a) for a in self.ros_arguments]
        temp_files = []
        name = ns = None
        if self.node_name is not None:
            name = perform_substitutions(context, self.node_name)
            ros_args += ["-r", f"__node:={name}"]
        if self.namespace is not None:
            ns = "/" + perform_substitutions(context, self.namespace).strip("/")  # absolute; '' -> '/'
            ros_args += ["-r", f"__ns:={ns}"]
        # launch_ros keys a dict's parameters by the full node name only when name and namespace are known
        params_key = f"{ns.rstrip('/')}/{name}" if name is not None and ns is not None else "/**"
        for entry in self.parameters:
            if isinstance(entry, dict):
                values = _flatten(context, entry)
                handle = tempfile.NamedTemporaryFile("w", prefix="launch_params_", suffix=".yaml", delete=False)
                with handle:
                    yaml.safe_dump({params_key: {"ros__parameters": values}}, handle, default_flow_style=False)
                temp_files.append(handle.name)
                ros_args += ["--params-file", handle.name]
            else:
                path = perform_substitutions(context, entry)
                if not os.path.isfile(path):
                    raise SubstitutionFailure(f"parameter file '{path}' does not exist")
                ros_args += ["--params-file", path]
        for source, target in self.remappings:
            ros_args += ["-r", f"{perform_substitutions(context, source)}:={perform_substitutions(context, target)}"]
        if ros_args:
            cmd += ["--ros-args"] + ros_args
        label = perform_substitutions(context, self.exec_name) if self.exec_name else os.path.basename(cmd[0])
        return ProcessSpec(label, cmd, temp_files)
