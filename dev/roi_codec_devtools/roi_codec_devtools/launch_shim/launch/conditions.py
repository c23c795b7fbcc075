"""Shim of launch.conditions: IfCondition, UnlessCondition (same truth values as launch)."""
from __future__ import annotations

from .core import Condition, LaunchContext, perform_substitutions


def _truth(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"condition expects 'true', 'false', '1' or '0', got '{text}'")


class IfCondition(Condition):
    def __init__(self, predicate_expression):
        self.predicate = predicate_expression

    def evaluate(self, context: LaunchContext) -> bool:
        return _truth(perform_substitutions(context, self.predicate))


class UnlessCondition(IfCondition):
    def evaluate(self, context: LaunchContext) -> bool:
        return not super().evaluate(context)
