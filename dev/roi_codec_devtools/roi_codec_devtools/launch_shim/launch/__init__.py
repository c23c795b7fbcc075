"""Shim of ROS 2 ``launch`` for roi-launch (see ../__init__.py): descriptions only, no event system."""
from .core import Action, LaunchContext, LaunchDescription, Substitution, SubstitutionFailure, perform_substitutions

ROI_CODEC_ROS_SHIM = True

__all__ = ["Action", "LaunchContext", "LaunchDescription", "Substitution", "SubstitutionFailure", "perform_substitutions"]
