"""Import directions: the command line sits above the packages it drives; the codec core imports none of them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "roi_codec_ros"

# package -> the roi_codec_ros parts it may import (itself included); module-level and function-level imports alike
ALLOWED = {
    "codec": {"codec", "devices", "files"},
    "detector": {"detector", "devices", "files"},
    "training": {"training", "codec", "detector", "devices", "files"},
    "classical": {"classical", "detector"},
    "engine": {"engine", "classical", "codec", "devices", "files"},
    "rate_control": {"rate_control"},
    "deploy": {"deploy", "codec", "devices", "files"},
    "evaluation": {"evaluation", "engine", "classical", "codec", "detector", "devices", "files", "msg"},
}


def _imported_parts(path: Path) -> set[str]:
    """First component below roi_codec_ros of every import in ``path`` (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).parent.parts  # e.g. ("roi_codec_ros", "codec")
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join((*base, node.module)) if node.module else ".".join(base)]
                if not node.module:
                    names = [".".join((*base, alias.name)) for alias in node.names]
            else:
                names = [node.module]
        for name in names:
            bits = name.split(".")
            if bits[0] == "roi_codec_ros" and len(bits) > 1:
                parts.add(bits[1])
    return parts


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_core_packages_import_nothing_above_them(package):
    offenders = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        extra = _imported_parts(path) - ALLOWED[package]
        if extra:
            offenders[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert not offenders, offenders


def test_the_command_line_has_its_own_package():
    assert not (PACKAGE / "cli.py").exists()
    assert not [p for p in PACKAGE.rglob("cli.py")], "command-line modules belong in roi_codec_ros/cli/"
    from roi_codec_ros.cli import COMMANDS

    import importlib

    for command, (module, _) in COMMANDS.items():
        assert hasattr(importlib.import_module(module), "main"), command
