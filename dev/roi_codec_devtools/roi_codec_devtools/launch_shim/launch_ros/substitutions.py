"""Shim of launch_ros.substitutions: FindPackageShare, FindPackagePrefix (via the ament index)."""
from __future__ import annotations

from launch.core import LaunchContext, Substitution, SubstitutionFailure, describe_substitutions, perform_substitutions


class FindPackagePrefix(Substitution):
    def __init__(self, package):
        self.package = package

    def perform(self, context: LaunchContext) -> str:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        name = perform_substitutions(context, self.package)
        try:
            return get_package_prefix(name)
        except PackageNotFoundError as exc:
            raise SubstitutionFailure(f"package '{name}' not found on AMENT_PREFIX_PATH (run scripts/build_msgs.sh?)") from exc

    def describe(self) -> str:
        return f"{type(self).__name__}(pkg={describe_substitutions(self.package)})"


class FindPackageShare(FindPackagePrefix):
    def perform(self, context: LaunchContext) -> str:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        name = perform_substitutions(context, self.package)
        try:
            return get_package_share_directory(name)
        except PackageNotFoundError as exc:
            raise SubstitutionFailure(f"package '{name}' not found on AMENT_PREFIX_PATH (run scripts/build_msgs.sh?)") from exc
