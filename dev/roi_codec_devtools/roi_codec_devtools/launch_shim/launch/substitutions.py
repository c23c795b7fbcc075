"""Shim of launch.substitutions: LaunchConfiguration, TextSubstitution, PathJoinSubstitution, EnvironmentVariable."""
from __future__ import annotations

import os

from .core import LaunchContext, Substitution, SubstitutionFailure, describe_substitutions, perform_substitutions


class TextSubstitution(Substitution):
    def __init__(self, *, text: str):
        self.text = text

    def perform(self, context: LaunchContext) -> str:
        return self.text

    def describe(self) -> str:
        return f"'{self.text}'"


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name, *, default=None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: LaunchContext) -> str:
        name = perform_substitutions(context, self.variable_name)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return perform_substitutions(context, self.default)
        raise SubstitutionFailure(f"launch configuration '{name}' does not exist")

    def describe(self) -> str:
        return f"LaunchConfig({describe_substitutions(self.variable_name)})"


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions):
        self.substitutions = list(substitutions)

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*(perform_substitutions(context, s) for s in self.substitutions))

    def describe(self) -> str:
        return f"PathJoin('{describe_substitutions(self.substitutions)}')"


class EnvironmentVariable(Substitution):
    def __init__(self, name, *, default_value=None):
        self.name = name
        self.default_value = default_value

    def perform(self, context: LaunchContext) -> str:
        name = perform_substitutions(context, self.name)
        if name in os.environ:
            return os.environ[name]
        if self.default_value is None:
            raise SubstitutionFailure(f"environment variable '{name}' does not exist")
        return perform_substitutions(context, self.default_value)

    def describe(self) -> str:
        return f"EnvVar({describe_substitutions(self.name)})"
