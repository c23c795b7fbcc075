"""Declaring node parameters from one table, with descriptors (description, range, read-only, choices).

Each node lists its parameters once as ``Param`` rows; ``declare_parameters`` turns them into ROS parameters
with full descriptors, so ``roi-param describe``/``ros2 param describe`` show the documentation and rclpy
itself enforces types, ranges and read-only.  ``check_choices`` covers the string choices rclpy cannot enforce;
node-specific checks live in each node's one on-set-parameters callback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_TYPE_OF_DEFAULT = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = (
    ParameterType.PARAMETER_BOOL_ARRAY,
    ParameterType.PARAMETER_INTEGER_ARRAY,
    ParameterType.PARAMETER_DOUBLE_ARRAY,
    ParameterType.PARAMETER_STRING_ARRAY,
)

QOS_CHOICES = ("sensor_data", "reliable")


@dataclass(frozen=True)
class Param:
    """One declared parameter. ``type`` is needed only for arrays (an empty default has no type)."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    type: int | None = None

    @property
    def param_type(self) -> int:
        if self.type is not None:
            return self.type
        return _TYPE_OF_DEFAULT[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, type=self.param_type, description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if self.param_type == ParameterType.PARAMETER_INTEGER:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d


def declare_parameters(node: Node, table: Iterable[Param]) -> dict[str, Any]:
    """Declare every row (values from launch/params files override the defaults); returns name -> value."""
    values = {}
    for p in table:
        if p.param_type in _ARRAY_TYPES and not p.default:
            # an empty list has no type of its own: declare by type, then give it a typed empty value
            # (set_parameters: so such rows must not be read-only)
            node.declare_parameter(p.name, Parameter.Type(p.param_type), p.descriptor())
            try:
                node.get_parameter(p.name)
            except ParameterUninitializedException:
                node.set_parameters([Parameter(p.name, Parameter.Type(p.param_type), [])])
        else:
            _declare_scalar(node, p)
        values[p.name] = node.get_parameter(p.name).value
    for p in table:
        if p.choices and values[p.name] not in p.choices:
            raise ValueError(f"parameter {p.name}={values[p.name]!r} is not one of {', '.join(p.choices)}")
    return values


def _declare_scalar(node: Node, p: Param) -> None:
    try:
        node.declare_parameter(p.name, p.default, p.descriptor())
    except InvalidParameterTypeException:
        # `fps:=10` on a launch line or `fps: 10` in YAML is an integer; accept it for a double parameter
        # (plain rclpy would refuse to start).  rclpy has no public accessor for the override.
        override = getattr(node, "_parameter_overrides", {}).get(p.name)
        value = override.value if override is not None else None
        if p.param_type != ParameterType.PARAMETER_DOUBLE or not isinstance(value, int) or isinstance(value, bool):
            raise
        node.declare_parameter(p.name, float(value), p.descriptor(), ignore_override=True)


def check_choices(table: Sequence[Param], parameters: Iterable[Parameter]) -> str | None:
    """Reason to reject a change to a string parameter outside its choices, else None."""
    choices = {p.name: p.choices for p in table if p.choices}
    for parameter in parameters:
        allowed = choices.get(parameter.name)
        if allowed and parameter.value not in allowed:
            return f"{parameter.name} must be one of {', '.join(allowed)}, got {parameter.value!r}"
    return None


def boxes_from_flat(values: Sequence[float], name: str) -> tuple[tuple[float, float, float, float], ...]:
    """[x1, y1, x2, y2, x1, y1, ...] (a ROS double array) -> tuple of 4-tuples; ValueError unless len % 4 == 0."""
    values = [float(v) for v in values]
    if len(values) % 4:
        raise ValueError(f"{name} needs 4 numbers (x1, y1, x2, y2) per box, got {len(values)} numbers")
    return tuple(tuple(values[i : i + 4]) for i in range(0, len(values), 4))


def qos_profile(name: str) -> QoSProfile:
    """'sensor_data': best effort, keep last 1 (late frames are worthless); 'reliable': reliable, keep last 1.

    A best-effort subscriber matches both kinds of publisher; a reliable subscriber only a reliable publisher.
    """
    if name not in QOS_CHOICES:
        raise ValueError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {name!r}")
    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability, durability=DurabilityPolicy.VOLATILE)


# statistics and detections: small, every one matters to a UI or a log
STATISTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
