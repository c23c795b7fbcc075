"""Core of the launch shim: context, substitutions, actions (the subset roi_codec_ros launch files use)."""
from __future__ import annotations

from typing import Iterable


class SubstitutionFailure(RuntimeError):
    """A substitution cannot be evaluated (e.g. an undeclared launch configuration)."""


class LaunchContext:
    """Launch configurations (name -> string value), as in launch.LaunchContext."""

    def __init__(self, launch_configurations: dict[str, str] | None = None):
        self.launch_configurations: dict[str, str] = dict(launch_configurations or {})


class Substitution:
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """Human-readable form, the same text as launch's (``ros2 launch --show-args`` prints it)."""
        return type(self).__name__


def normalize_to_list_of_substitutions(value) -> list:
    """A string, a Substitution, or an iterable of those -> list of Substitutions (as launch.utilities)."""
    from .substitutions import TextSubstitution

    if isinstance(value, str):
        return [TextSubstitution(text=value)]
    if isinstance(value, Substitution):
        return [value]
    if isinstance(value, Iterable):
        return [TextSubstitution(text=v) if isinstance(v, str) else v for v in value]
    raise TypeError(f"expected a string, a Substitution or a list of them, got {value!r}")


def describe_substitutions(substitutions) -> str:
    """'a' + LaunchConfig('b') ...: how launch describes a list of substitutions."""
    return " + ".join(s.describe() for s in normalize_to_list_of_substitutions(substitutions))


def perform_substitutions(context: LaunchContext, value) -> str:
    """A string, a Substitution, or an iterable of those (concatenated), as launch's SomeSubstitutionsType."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(context)
    if isinstance(value, Iterable):
        return "".join(perform_substitutions(context, v) for v in value)
    raise TypeError(f"expected a string, a Substitution or a list of them, got {value!r}")


class Condition:
    def evaluate(self, context: LaunchContext) -> bool:
        raise NotImplementedError


class Action:
    """Base of shim actions: only the ``condition`` keyword is common to all."""

    def __init__(self, *, condition: Condition | None = None):
        self.condition = condition

    def enabled(self, context: LaunchContext) -> bool:
        return self.condition is None or self.condition.evaluate(context)


class LaunchDescription:
    def __init__(self, initial_entities: Iterable[Action] | None = None):
        self.entities: list[Action] = list(initial_entities or [])

    def add_action(self, action: Action) -> None:
        self.entities.append(action)

    def get_launch_arguments(self):
        from .actions import DeclareLaunchArgument

        return [e for e in self.entities if isinstance(e, DeclareLaunchArgument)]
