"""``roi-param``: list/get/set/describe/dump parameters of a running node (the ``ros2 param`` subset we need).

    roi-param list     <node>
    roi-param get      <node> <name>
    roi-param set      <node> <name> <value>      # value in YAML: 0.3, true, "[car, person]", "[0, 0, 100, 80]"
    roi-param describe <node> <name>
    roi-param dump     <node>                     # a params file (YAML) of every parameter

It calls the node's standard rcl_interfaces services (list_parameters, get_parameters, set_parameters,
describe_parameters) with rclpy, so it works against any ROS 2 node, and prints what ``ros2 param`` prints.
One deliberate difference: ``set`` converts the value to the parameter's declared type when that loses
nothing (``rate 1`` -> 1.0, ``[0, 0, 5, 5]`` -> doubles), where ``ros2 param set`` would report a type error.
Exit status: 0 done, 1 rejected/failed (the node's reason is printed), 2 usage or node not found.
Where the real ``ros2 param`` exists, prefer it; this tool never replaces it.
"""
from __future__ import annotations

import argparse
import os
import sys

import yaml

TIMEOUT_S = 10.0

# ParameterType -> (ParameterValue field, label used by `ros2 param get`)
_FIELDS = {
    1: ("bool_value", "Boolean value is"),
    2: ("integer_value", "Integer value is"),
    3: ("double_value", "Double value is"),
    4: ("string_value", "String value is"),
    5: ("byte_array_value", "Byte values are"),
    6: ("bool_array_value", "Boolean values are"),
    7: ("integer_array_value", "Integer values are"),
    8: ("double_array_value", "Double values are"),
    9: ("string_array_value", "String values are"),
}


class ParamError(RuntimeError):
    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def value_of(parameter_value):
    """Python value of an rcl_interfaces/ParameterValue (None when not set)."""
    field = _FIELDS.get(parameter_value.type)
    if field is None:
        return None
    value = getattr(parameter_value, field[0])
    return list(value) if parameter_value.type >= 5 else value


def to_parameter_value(value, declared_type: int, dynamic: bool = False):
    """ParameterValue for a Python value, converted to ``declared_type`` where that loses nothing.

    ``dynamic``: the parameter is dynamically typed (``declared_type`` is then only its current type), so a
    value of another type is sent as it is instead of being refused.
    """
    from rcl_interfaces.msg import ParameterType, ParameterValue

    t = ParameterType
    if declared_type == t.PARAMETER_DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif declared_type == t.PARAMETER_DOUBLE_ARRAY and isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        value = [float(v) for v in value]
    elif declared_type == t.PARAMETER_STRING and isinstance(value, (int, float, bool)) and not dynamic:
        raise ParamError(f"value {value!r} is not a string (quote it in YAML, e.g. \"'{value}'\")")
    elif declared_type == t.PARAMETER_STRING_ARRAY and isinstance(value, list) and not dynamic:
        value = [str(v) for v in value]
    if value is None:
        raise ParamError("empty value")
    if isinstance(value, list) and not value:
        if declared_type not in (t.PARAMETER_DOUBLE_ARRAY, t.PARAMETER_INTEGER_ARRAY, t.PARAMETER_STRING_ARRAY, t.PARAMETER_BOOL_ARRAY):
            raise ParamError("an empty list needs an array parameter (this one is not an array now)")
        return ParameterValue(type=declared_type)
    from rclpy.parameter import Parameter

    try:
        return Parameter("value", value=value).get_parameter_value()
    except (TypeError, ValueError) as exc:
        # e.g. "[nan, 0, 1, 1]": YAML reads a bare nan as text, so the list mixes strings and numbers
        hint = " (YAML reads nan/inf as text; write .nan/.inf for numbers)" if isinstance(value, list) else ""
        raise ParamError(f"value {value!r} is not a ROS parameter value: {exc}{hint}") from exc


class ParamClient:
    """Service clients for one remote node's parameters."""

    def __init__(self, node_name: str, timeout: float = TIMEOUT_S):
        import rclpy
        from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters

        self.target = node_name if node_name.startswith("/") else "/" + node_name
        self.timeout = timeout
        rclpy.init(args=[])
        self.node = rclpy.create_node(f"roi_param_{os.getpid()}", start_parameter_services=False)
        self._types = {
            "list_parameters": ListParameters,
            "get_parameters": GetParameters,
            "set_parameters": SetParameters,
            "describe_parameters": DescribeParameters,
        }
        self._clients = {}

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()

    def call(self, service: str, request):
        import rclpy

        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self.node.create_client(self._types[service], f"{self.target}/{service}")
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise ParamError(f"node {self.target} not found (no {service} service within {self.timeout:g} s)", status=2)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=self.timeout)
        if not future.done() or future.result() is None:
            raise ParamError(f"{self.target}/{service} did not answer within {self.timeout:g} s")
        return future.result()

    def list(self) -> list[str]:
        req = self._types["list_parameters"].Request()
        return sorted(self.call("list_parameters", req).result.names)

    def get(self, names: list[str]):
        req = self._types["get_parameters"].Request(names=names)
        return list(self.call("get_parameters", req).values)

    def describe(self, names: list[str]):
        req = self._types["describe_parameters"].Request(names=names)
        return list(self.call("describe_parameters", req).descriptors)

    def describe_one(self, name: str):
        """The descriptor of one parameter; ParamError (1) when the node has not declared it (rclpy then
        answers with no descriptor at all, or one of type 'not set')."""
        descriptors = self.describe([name])
        if len(descriptors) != 1 or (descriptors[0].type == 0 and not descriptors[0].dynamic_typing):
            raise ParamError(f"Parameter not declared: {name}")
        return descriptors[0]

    def get_one(self, name: str):
        values = self.get([name])
        if len(values) != 1 or values[0].type == 0:
            raise ParamError(f"Parameter not set: {name}")
        return values[0]

    def set(self, name: str, value) -> tuple[bool, str]:
        from rcl_interfaces.msg import Parameter as ParameterMsg

        descriptor = self.describe_one(name)
        msg = ParameterMsg(name=name, value=to_parameter_value(value, descriptor.type, descriptor.dynamic_typing))
        req = self._types["set_parameters"].Request(parameters=[msg])
        (result,) = self.call("set_parameters", req).results
        return bool(result.successful), result.reason


def _nest(flat: dict) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}} (the layout `ros2 param dump` writes)."""
    out: dict = {}
    for name, value in sorted(flat.items()):
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _describe_text(descriptor) -> str:
    """What `ros2 param describe` prints (ros2param/verb/describe.py), line for line."""
    lines = [f"Parameter name: {descriptor.name}", f"  Type: {_type_name(descriptor.type)}"]
    if descriptor.description:
        lines.append(f"  Description: {descriptor.description}")
    lines.append("  Constraints:")
    if descriptor.read_only:
        lines.append("    Read only: true")
    ranges = list(descriptor.floating_point_range) + list(descriptor.integer_range)
    if ranges:
        lines += [f"    Min value: {ranges[0].from_value}", f"    Max value: {ranges[0].to_value}"]
        if ranges[0].step:
            lines.append(f"    Step: {ranges[0].step}")
    if descriptor.additional_constraints:
        lines.append(f"    Additional constraints: {descriptor.additional_constraints}")
    return "\n".join(lines)


def _type_name(type_id: int) -> str:
    names = ["not set", "boolean", "integer", "double", "string", "byte array", "boolean array",
             "integer array", "double array", "string array"]
    return names[type_id] if 0 <= type_id < len(names) else str(type_id)


def run(args: argparse.Namespace) -> int:
    client = ParamClient(args.node, args.timeout)
    try:
        if args.command == "list":
            print(f"{client.target}:")
            for name in client.list():
                print(f"  {name}")
        elif args.command == "get":
            value = client.get_one(args.name)
            print(f"{_FIELDS[value.type][1]}: {value_of(value)}")
        elif args.command == "describe":
            print(_describe_text(client.describe_one(args.name)))
        elif args.command == "set":
            ok, reason = client.set(args.name, yaml.safe_load(args.value))
            if not ok:
                print(f"Set parameter failed: {reason}", file=sys.stderr)
                return 1
            print("Set parameter successful")
        elif args.command == "dump":
            names = client.list()
            values = {n: value_of(v) for n, v in zip(names, client.get(names))}
            print(yaml.safe_dump({client.target: {"ros__parameters": _nest(values)}}, sort_keys=True), end="")
        return 0
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for the node (default %(default)s)")
    parser = argparse.ArgumentParser(prog="roi-param", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command, extra in (("list", []), ("dump", []), ("get", ["name"]), ("describe", ["name"]), ("set", ["name", "value"])):
        p = sub.add_parser(command, parents=[common])
        p.add_argument("node", help="node name, e.g. /encoder or /robot/encoder")
        for name in extra:
            p.add_argument(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ParamError as exc:
        print(f"roi-param: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
