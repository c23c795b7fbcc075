"""One source of truth for defaults: the parameters the nodes declare.  Every value in config/*.yaml, every launch
argument that feeds a parameter, and every default in docs/ros.md must equal the declared default; the Fast DDS
profile must carry what the nodes say it carries.  (No ROS graph: plain files and the PARAMETERS tables.)"""
from __future__ import annotations

import ast
from pathlib import Path
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from roi_codec_ros.nodes import budget_node, decoder_node, encoder_node, source_node

REPO = Path(__file__).resolve().parents[1]
TABLES = {"encoder_node": encoder_node.PARAMETERS, "decoder_node": decoder_node.PARAMETERS, "frame_source": source_node.PARAMETERS,
          "budget_node": budget_node.PARAMETERS}
CONFIGS = {"encoder.yaml": "encoder_node", "decoder.yaml": "decoder_node", "source.yaml": "frame_source",
           "budget.yaml": "budget_node"}


def _defaults(executable: str) -> dict:
    return {p.name: p.default for p in TABLES[executable]}


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b  # 10 vs 10.0 differ: an int in YAML for a double parameter is a type error


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_files_hold_exactly_the_declared_defaults(config):
    data = yaml.safe_load((REPO / "config" / config).read_text())
    values = _flatten(data["/**"]["ros__parameters"])
    defaults = _defaults(CONFIGS[config])
    assert set(values) == set(defaults), f"config/{config}: extra {set(values) - set(defaults)}, missing {set(defaults) - set(values)}"
    wrong = {name: (values[name], defaults[name]) for name in values if not _same(values[name], defaults[name])}
    assert not wrong, f"config/{config} disagrees with the declared defaults (file, declared): {wrong}"


def _launch_file_bindings(path: Path) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """(argument -> default text, [(executable, parameter, argument)]) read from a launch file's source."""
    tree = ast.parse(path.read_text())
    defaults, bindings = {}, []

    def name_of(call):
        return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")

    for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call)]:
        if name_of(call) == "DeclareLaunchArgument":
            kw = {k.arg: k.value for k in call.keywords}
            if isinstance(kw.get("default_value"), ast.Constant):
                defaults[call.args[0].value] = kw["default_value"].value
        elif name_of(call) == "Node":
            kw = {k.arg: k.value for k in call.keywords}
            executable = kw["executable"].value
            for item in getattr(kw.get("parameters"), "elts", []):
                if not isinstance(item, ast.Dict):
                    continue
                for key, value in zip(item.keys, item.values):
                    if isinstance(value, ast.Call) and name_of(value) == "LaunchConfiguration":
                        bindings.append((executable, key.value, value.args[0].value))
    return defaults, bindings


@pytest.mark.parametrize("launch_file", sorted(p.name for p in (REPO / "launch").glob("*.launch.py")))
def test_launch_argument_defaults_equal_the_declared_defaults(launch_file):
    defaults, bindings = _launch_file_bindings(REPO / "launch" / launch_file)
    assert bindings, f"{launch_file}: no parameters bound to launch arguments found"
    for executable, parameter, argument in bindings:
        declared = _defaults(executable)[parameter]
        given = yaml.safe_load(defaults[argument])  # launch_ros types substitution results as YAML
        if isinstance(declared, float) and isinstance(given, int) and not isinstance(given, bool):
            given = float(given)
        assert _same(given, declared), f"{launch_file}: {argument}:={defaults[argument]!r} but {executable} declares {parameter}={declared!r}"


def _format_default(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)


def test_docs_table_defaults_equal_the_declared_defaults():
    text = (REPO / "docs" / "ros.md").read_text()
    for executable, table in TABLES.items():
        for p in table:
            rows = re.findall(rf"^\| `{re.escape(p.name)}` \| [^|]+ \| `([^`]*)` \|", text, flags=re.M)
            assert rows, f"docs/ros.md has no row for {p.name}"
            assert _format_default(p.default) in rows, f"docs/ros.md: {p.name} default {rows} != declared {p.default!r}"


def test_fastdds_profile_carries_the_documented_limit():
    from roi_codec_ros.nodes.runtime import TRANSPORT_LIMIT_BYTES

    root = ET.parse(REPO / "config" / "fastdds_large_frames.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("d:segment_size", namespaces=ns))
    queue = int(shm[0].findtext("d:port_queue_capacity", namespaces=ns))
    fragment = 65500  # Fast DDS fragments large samples to the UDPv4 datagram size, over shared memory too
    assert 4096 * 3072 * 3 < TRANSPORT_LIMIT_BYTES  # a 12 MP rgb8 camera frame is inside the limit
    assert segment >= 2 * TRANSPORT_LIMIT_BYTES  # two samples at the limit in flight per sender
    assert queue * fragment >= TRANSPORT_LIMIT_BYTES  # every fragment of one such sample in a receiver's port queue
    transports = [t.text for t in root.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert len(transports) == 2  # shared memory and UDPv4 (other machines) both stay
    assert root.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"
