"""Shim of launch.actions: DeclareLaunchArgument, LogInfo, OpaqueFunction."""
from __future__ import annotations

from .core import Action, LaunchContext, SubstitutionFailure, normalize_to_list_of_substitutions, perform_substitutions


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value=None, description: str = "", choices=None, **kwargs):
        super().__init__(**kwargs)
        self.name = name
        # a list of substitutions, as in launch (what --show-args describes)
        self.default_value = None if default_value is None else normalize_to_list_of_substitutions(default_value)
        self.description = description or "no description given"
        self.choices = list(choices) if choices is not None else None

    def execute(self, context: LaunchContext) -> None:
        # as launch: a value given on the command line wins; otherwise the default; otherwise an error
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise SubstitutionFailure(f"missing required launch argument '{self.name}' ({self.description})")
            context.launch_configurations[self.name] = perform_substitutions(context, self.default_value)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise SubstitutionFailure(f"argument '{self.name}' is '{value}', expected one of {self.choices}")


class LogInfo(Action):
    def __init__(self, *, msg, **kwargs):
        super().__init__(**kwargs)
        self.msg = msg

    def execute(self, context: LaunchContext) -> None:
        print(f"[INFO] [launch.user]: {perform_substitutions(context, self.msg)}", flush=True)


class OpaqueFunction(Action):
    """As launch.actions.OpaqueFunction: ``function(context, *args, **kwargs)`` runs when the action is executed and
    returns the actions to execute next (or None); e.g. one Node per item of a list argument."""

    def __init__(self, *, function, args=None, kwargs=None, **kw):
        super().__init__(**kw)
        if not callable(function):
            raise TypeError(f"OpaqueFunction needs a callable, got {function!r}")
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context: LaunchContext):
        return list(self.function(context, *self.args, **self.kwargs) or [])
