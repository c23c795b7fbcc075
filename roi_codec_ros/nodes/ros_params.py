"""Declaring node parameters from one table, with descriptors (description, range, read-only, choices), and QoS.

Each node lists its parameters once as ``Param`` rows; ``declare_parameters`` turns them into ROS parameters
with full descriptors, so ``ros2 param describe`` shows the documentation and rclpy itself enforces types,
ranges and read-only.  ``check_choices`` covers the string choices rclpy cannot enforce; node-specific checks
live in each node's on-set callback (validation) and post-set callback (applying).

QoS: image-sized topics use ``qos_profile_sensor_data`` (best effort, keep last 5, volatile) with
``QoSOverridingOptions.with_default_policies()``, so history, depth and reliability of every such publisher and
subscription can be overridden at start-up with the standard ``qos_overrides.<topic>.<publisher|subscription>.
<policy>`` parameters (params file or ``-p``), as in every rclcpp/rclpy node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions

_TYPE_OF_DEFAULT = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_TYPE_NAMES = {
    ParameterType.PARAMETER_BOOL: "bool",
    ParameterType.PARAMETER_INTEGER: "integer",
    ParameterType.PARAMETER_DOUBLE: "double",
    ParameterType.PARAMETER_STRING: "string",
    ParameterType.PARAMETER_STRING_ARRAY: "string array",
}
# parameters rclpy or the QoS machinery declare themselves (not in a node's table, never "unknown")
_FOREIGN_PREFIXES = ("qos_overrides.", "use_sim_time", "start_type_description_service")

NO_BOXES = "none"  # the explicit "no static boxes" value (`ros2 param set` cannot send an empty array)
NO_CLASS_WEIGHTS = "none"  # the same for "no class weights" (rcl's YAML parser cannot read an empty array either)

# statistics: small, every one matters to a UI or a log
STATISTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# keyframe requests: small and rare (rate-limited), each one matters; volatile: a stale request is not replayed
KEYFRAME_REQUEST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


class ParameterError(ValueError):
    """A start-up parameter value that cannot be used (the message names the parameter and what to write)."""


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    ``type`` is needed only for arrays; ``dynamic`` declares it dynamically typed (rclpy accepts any type and the
    node's on-set callback validates it): used where one value must be writable as a string ('none') or an array.
    """

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    type: int | None = None
    dynamic: bool = False

    @property
    def param_type(self) -> int:
        if self.type is not None:
            return self.type
        return _TYPE_OF_DEFAULT[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.dynamic:
            d.dynamic_typing = True
            return d
        d.type = self.param_type
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if self.param_type == ParameterType.PARAMETER_INTEGER:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d


def node_options() -> dict[str, Any]:
    """Keyword arguments for ``Node.__init__`` that ``declare_parameters`` relies on.

    rclpy gives no public access to start-up overrides before a parameter is declared; declaring them
    automatically (dynamically typed) lets ``declare_parameters`` read each value with ``get_parameter``,
    convert it where that loses nothing, and re-declare it with the node's own descriptor.
    """
    return {"automatically_declare_parameters_from_overrides": True}


def _startup_value(p: Param, value: Any) -> Any:
    """A start-up override converted to the row's type where that loses nothing; ParameterError otherwise."""
    if p.dynamic:
        return value
    t = p.param_type
    if t == ParameterType.PARAMETER_DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # `fps:=10` on a launch line or `fps: 10` in YAML is an integer
    if t == ParameterType.PARAMETER_STRING_ARRAY and isinstance(value, list) and not any(isinstance(v, bool) for v in value):
        return [str(v) for v in value]  # `classes: [2, 7]` (ids)
    expected = {
        ParameterType.PARAMETER_BOOL: bool,
        ParameterType.PARAMETER_INTEGER: int,
        ParameterType.PARAMETER_DOUBLE: float,
        ParameterType.PARAMETER_STRING: str,
    }.get(t)
    if expected is not None and (type(value) is not expected):
        raise ParameterError(f"parameter {p.name} is a {_TYPE_NAMES[t]}, got {value!r}")
    return value


def declare_parameters(node: Node, table: Iterable[Param]) -> dict[str, Any]:
    """Declare every row with its descriptor, taking start-up overrides (params files, ``-p``); name -> value.

    The node must be created with ``node_options()``.  Overrides that are no row of the table and not declared by
    rclpy itself (``qos_overrides.*``, ``use_sim_time``) are logged as unknown and dropped: a typo in a params file
    is then visible instead of silently doing nothing.
    """
    table = list(table)
    rows = {p.name: p for p in table}
    overrides = {}
    for name in node.list_parameters([], 0).names:
        if name in rows:
            overrides[name] = node.get_parameter(name).value
            node.undeclare_parameter(name)
        elif name.startswith("qos_overrides."):
            # the QoS machinery declares these (read-only, typed) when the publisher/subscription is created
            node.undeclare_parameter(name)
        elif not name.startswith(_FOREIGN_PREFIXES):
            node.get_logger().warning(f"ignoring unknown parameter {name!r} (not a parameter of this node)")
            node.undeclare_parameter(name)
    values = {}
    for p in table:
        value = _startup_value(p, overrides[p.name]) if p.name in overrides else p.default
        node.declare_parameter(p.name, value, p.descriptor(), ignore_override=True)
        values[p.name] = node.get_parameter(p.name).value
    for p in table:
        if p.choices and values[p.name] not in p.choices:
            raise ParameterError(f"parameter {p.name}={values[p.name]!r} is not one of {', '.join(p.choices)}")
    return values


def current_values(node: Node, table: Iterable[Param]) -> dict[str, Any]:
    """name -> current value of every row (after a successful set: what the post-set callback applies)."""
    return {p.name: node.get_parameter(p.name).value for p in table}


def proposed_values(node: Node, table: Sequence[Param], parameters: Iterable) -> dict[str, Any]:
    """The values the node would have if ``parameters`` (an on-set callback's argument) were accepted."""
    names = {p.name for p in table}
    return {**current_values(node, table), **{p.name: p.value for p in parameters if p.name in names}}


def check_choices(table: Sequence[Param], parameters: Iterable) -> str | None:
    """Reason to reject a change to a string parameter outside its choices, else None."""
    choices = {p.name: p.choices for p in table if p.choices}
    for parameter in parameters:
        allowed = choices.get(parameter.name)
        if allowed and parameter.value not in allowed:
            return f"{parameter.name} must be one of {', '.join(allowed)}, got {parameter.value!r}"
    return None


def touches(table: Sequence[Param], parameters: Iterable) -> bool:
    """True when any of ``parameters`` is a row of ``table`` (callbacks also see qos_overrides.* declarations)."""
    names = {p.name for p in table}
    return any(p.name in names for p in parameters)


def check_parameter_change(node: Node, table: Sequence[Param], parameters: Iterable, validate=None) -> SetParametersResult:
    """The nodes' pre-set check: only changes of ``table``'s parameters are checked (others, e.g. qos_overrides.*
    declared with a publisher, pass); choices first, then ``validate(proposed values)``, whose ValueError is the
    reason. A rejection is logged and returned (``ros2 param set`` prints the reason)."""
    parameters = list(parameters)
    if not touches(table, parameters):
        return SetParametersResult(successful=True)
    reason = check_choices(table, parameters)
    if reason is None and validate is not None:
        try:
            validate(proposed_values(node, table, parameters))
        except ValueError as exc:
            reason = str(exc)
    if reason is not None:
        node.get_logger().warning(f"rejected parameter change: {reason}")
        return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def boxes_from_parameter(value: Any, name: str) -> tuple[tuple[float, float, float, float], ...]:
    """Boxes of a static-box parameter: 'none' or any empty array -> no boxes; a flat list of finite numbers,
    4 per box (x1, y1, x2, y2, ...) -> tuple of 4-tuples.  ValueError with the reason for anything else.

    `ros2 param set` sends "[]" as an empty bool array and "[nan, 0, 1, 1]" as a string (YAML reads nan as
    text); both arrive here and get an answer instead of a crash.
    """
    if isinstance(value, str):
        if value.strip().casefold() == NO_BOXES:
            return ()
        raise ValueError(
            f"{name} must be '{NO_BOXES}' or a flat list of numbers x1,y1,x2,y2,... (4 per box), got the string {value!r}"
        )
    if not isinstance(value, (list, tuple)) and not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be '{NO_BOXES}' or a flat list of numbers, got {value!r}")
    values = list(value)
    if not values:
        return ()
    if any(isinstance(v, (bool, str, bytes)) or not isinstance(v, (int, float)) for v in values):
        raise ValueError(f"{name} must be a flat list of numbers x1,y1,x2,y2,..., got {values!r}")
    values = [float(v) for v in values]
    if len(values) % 4:
        raise ValueError(f"{name} needs 4 numbers (x1, y1, x2, y2) per box, got {len(values)} numbers")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} must hold finite numbers, got {bad[0]!r}")
    return tuple(tuple(values[i : i + 4]) for i in range(0, len(values), 4))


def class_weights_from_parameter(value: Any, name: str):
    """Class weights of a ``class=weight`` string-array parameter: 'none' or any empty array -> none; else
    ``RoiMaskConfig.class_weights`` pairs (``detector.roi_mask.parse_class_weight_items``). ValueError with the
    reason for anything else (a number, a non-string item, a weight outside [0, 1])."""
    from roi_codec_ros.detector.roi_mask import parse_class_weight_items

    if isinstance(value, str):
        if value.strip().casefold() == NO_CLASS_WEIGHTS:
            return ()
        raise ValueError(f"{name} must be '{NO_CLASS_WEIGHTS}' or a string array of 'class=weight' items, "
                         f"e.g. ['person=1.0', 'car=0.5'], got the string {value!r}")
    if not isinstance(value, (list, tuple)) and not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be '{NO_CLASS_WEIGHTS}' or a string array of 'class=weight' items, got {value!r}")
    items = list(value)
    if any(not isinstance(v, str) for v in items):
        raise ValueError(f"{name} must be a string array of 'class=weight' items, got {items!r}")
    try:
        return parse_class_weight_items(items)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def sensor_qos() -> QoSProfile:
    """A fresh copy of ``qos_profile_sensor_data`` (QoS overrides are applied to the profile object in place)."""
    q = qos_profile_sensor_data
    return QoSProfile(history=q.history, depth=q.depth, reliability=q.reliability, durability=q.durability,
                      lifespan=q.lifespan, deadline=q.deadline, liveliness=q.liveliness,
                      liveliness_lease_duration=q.liveliness_lease_duration)


def qos_overrides() -> QoSOverridingOptions:
    """The standard overridable policies (history, depth, reliability) for a publisher or subscription."""
    return QoSOverridingOptions.with_default_policies()
