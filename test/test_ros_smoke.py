"""ROS 2 runtime smoke test: our own message type between two processes, and a remote parameter set.

The processes are this file run as a script (``python test_ros_smoke.py <role> ...``), with the environment
made explicit: LOCALHOST discovery, the run's ROS_DOMAIN_ID (test/conftest.py) and a temporary ROS_LOG_DIR.
Needs the messages built (scripts/build_msgs.sh, run by scripts/setup.sh).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
import subprocess
import sys
import time

from ros_helpers import console_script, ros_env

HERE = Path(__file__).resolve()
TIMEOUT_S = 90.0  # startup is slow on a loaded 2-core machine



def unique_topic(prefix: str) -> str:
    return f"/{prefix}_{os.getpid()}_{time.monotonic_ns() % 1_000_000}"


# --------------------------------------------------------------------------------------- subprocess roles
def make_frame():
    """A deterministic EncodedFrame with a 300 kB payload and every field set."""
    import numpy as np
    from roi_codec_ros.msg import EncodedFrame, RoiBox

    rng = np.random.default_rng(1234)
    frame = EncodedFrame(
        check_fields=True,  # a field the message does not have fails here
        format=EncodedFrame.FORMAT_RCB1,
        source_encoding="bgr8",
        keyframe=True,
        boxes=[
            RoiBox(x1=10.5, y1=20.25, x2=200.0, y2=300.0, class_id=2, class_name="car", score=0.875),
            RoiBox(x1=0.0, y1=0.0, x2=1242.0, y2=100.0, class_id=RoiBox.STATIC_CLASS_ID, class_name="static", score=1.0),
        ],
        sequence=2**40 + 7,
    )
    frame.header.frame_id = "camera"
    frame.header.stamp.sec, frame.header.stamp.nanosec = 1_700_000_000, 123_456_789
    frame.data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    return frame


def role_publish(topic: str, out: str) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from roi_codec_ros.msg import EncodedFrame

    rclpy.init()
    node = rclpy.create_node("smoke_publisher")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(EncodedFrame, topic, qos)
    frame = make_frame()
    Path(out).write_bytes(serialize_message(frame))
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:  # until the test stops us
        pub.publish(frame)
        rclpy.spin_once(node, timeout_sec=0.2)
    return 0


def role_subscribe(topic: str, out: str) -> int:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from roi_codec_ros.msg import EncodedFrame

    rclpy.init()
    node = rclpy.create_node("smoke_subscriber")
    received = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(EncodedFrame, topic, received.append, qos)
    deadline = time.monotonic() + TIMEOUT_S
    while not received and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    if not received:
        print("no message received", file=sys.stderr)
        return 1
    Path(out).write_bytes(serialize_message(received[0]))
    return 0


def role_param_node(node_name: str, out: str) -> int:
    """A node with parameter 'gain' in [0, 10]; its on-set callback logs every call and rejects gain > 5."""
    import rclpy
    from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult

    rclpy.init()
    node = rclpy.create_node(node_name)
    descriptor = ParameterDescriptor(description="test gain", floating_point_range=[FloatingPointRange(from_value=0.0, to_value=10.0)])
    node.declare_parameter("gain", 1.0, descriptor)
    log = open(out, "a", buffering=1)

    def on_set(parameters):
        for p in parameters:
            if p.name == "gain" and p.value > 5.0:
                log.write(f"rejected gain={p.value}\n")
                return SetParametersResult(successful=False, reason="gain above 5 is not allowed")
            log.write(f"accepted {p.name}={p.value}\n")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    log.write("ready\n")
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    return 0


# ------------------------------------------------------------------------------------------------ tests
def _start(role: str, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), role, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def test_custom_message_crosses_processes_byte_identical(tmp_path):
    env = ros_env(tmp_path)
    topic = unique_topic("smoke_frame")
    sent, got = tmp_path / "sent.bin", tmp_path / "got.bin"
    subscriber = _start("subscribe", topic, str(got), env=env)
    publisher = _start("publish", topic, str(sent), env=env)
    try:
        code = subscriber.wait(timeout=TIMEOUT_S + 30)
    finally:
        sub_log, pub_log = _stop(subscriber), _stop(publisher)
    assert code == 0, f"subscriber failed:\n{sub_log}\npublisher:\n{pub_log}"
    sent_bytes, got_bytes = sent.read_bytes(), got.read_bytes()
    assert len(sent_bytes) > 300_000
    assert hashlib.sha256(got_bytes).hexdigest() == hashlib.sha256(sent_bytes).hexdigest()

    from rclpy.serialization import deserialize_message
    from roi_codec_ros.msg import EncodedFrame

    frame = deserialize_message(got_bytes, EncodedFrame)
    expected = make_frame()
    assert bytes(frame.data) == bytes(expected.data)
    assert (frame.format, frame.source_encoding, frame.keyframe, frame.sequence) == ("rcb1", "bgr8", True, 2**40 + 7)
    assert [b.class_name for b in frame.boxes] == ["car", "static"]


def test_parameter_set_from_another_process_reaches_on_set_callback(tmp_path):
    env = ros_env(tmp_path)
    node_name = f"smoke_params_{os.getpid()}"
    log = tmp_path / "callback.log"
    node = _start("param_node", node_name, str(log), env=env)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (log.exists() and "ready" in log.read_text()) and time.monotonic() < deadline and node.poll() is None:
            time.sleep(0.2)
        param = [console_script("roi-param")]
        ok = subprocess.run([*param, "set", f"/{node_name}", "gain", "2.5", "--timeout", "60"], env=env,
                            capture_output=True, text=True, timeout=120)
        bad = subprocess.run([*param, "set", f"/{node_name}", "gain", "7"], env=env, capture_output=True, text=True, timeout=120)
        out_of_range = subprocess.run([*param, "set", f"/{node_name}", "gain", "11"], env=env, capture_output=True, text=True, timeout=120)
        value = subprocess.run([*param, "get", f"/{node_name}", "gain"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        node_log = _stop(node)
    assert ok.returncode == 0, f"{ok.stdout}{ok.stderr}\nnode:\n{node_log}"
    assert "Set parameter successful" in ok.stdout
    assert bad.returncode == 1 and "gain above 5 is not allowed" in bad.stderr
    assert out_of_range.returncode == 1 and "out of range" in out_of_range.stderr  # rclpy's own range check
    assert value.stdout.strip() == "Double value is: 2.5"
    calls = log.read_text().splitlines()
    assert "accepted gain=2.5" in calls and "rejected gain=7.0" in calls
    assert not any("11" in line for line in calls)  # rejected before reaching the callback


if __name__ == "__main__":
    roles = {"publish": role_publish, "subscribe": role_subscribe, "param_node": role_param_node}
    sys.exit(roles[sys.argv[1]](*sys.argv[2:]))
