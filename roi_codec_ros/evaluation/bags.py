"""rosbag2 files without a ROS graph (``rosbags``): read image topics, write evaluation bags, make test bags.

* ``iter_bag_frames``: sensor_msgs/msg/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16) or
  sensor_msgs/msg/CompressedImage (anything OpenCV decodes) from an mcap or sqlite3 rosbag2 -> ``Frame``s.
* ``EvalBagWriter``: an output bag with, per evaluated frame, the original (Image rgb8) on ``<topic>``, the payload
  and the decoded image (Image rgb8) on ``<topic>/decoded``, for viewing side by side in Foxglove/rviz. Topic names
  follow image_transport as the nodes do: our codec's payload goes out as ``roi_codec_ros/msg/EncodedFrame`` on
  ``<topic>/roi_codec`` (defined by msg/EncodedFrame.msg, registered from the .msg text), baselines' payloads as
  sensor_msgs/msg/CompressedImage on ``<topic>/compressed`` with ``format`` = the codec name.
* ``make_bag``: a video file (PyAV) or an image folder -> rosbag2 with sensor_msgs/msg/Image at a chosen rate.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype
from tqdm import tqdm

from roi_codec_ros.files import image_files, read_image_rgb
from .runner import Frame

LOG = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
ENCODED_FRAME_TYPE = "roi_codec_ros/msg/EncodedFrame"
ROI_BOX_TYPE = "roi_codec_ros/msg/RoiBox"
PACKAGE = "roi_codec_ros"
ROI_CODEC_SUFFIX = "roi_codec"  # <topic>/roi_codec: our EncodedFrame (image_transport-style, as encoder_node)
COMPRESSED_SUFFIX = "compressed"  # <topic>/compressed: sensor_msgs/CompressedImage (baselines)
DECODED_SUFFIX = "decoded"
RCB_FORMAT = "rcb1"  # EncodedFrame.FORMAT_RCB1
LABEL_CLASS_ID = -1  # RoiBox.STATIC_CLASS_ID: boxes that come from configuration/labels, not from a detector
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


class BagError(ValueError):
    """The bag or topic cannot be used (missing, wrong type, unsupported encoding)."""


# ------------------------------------------------------------------------------------------------ types
def find_msg_dir() -> Path | None:
    """Our package's ``msg/`` folder: the source tree's, else an installed ``share/roi_codec_ros/msg``."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    for folder in candidates:
        if (folder / "EncodedFrame.msg").is_file():
            return folder
    return None


def make_typestore(msg_dir: str | Path | None = None):
    """A ROS 2 typestore with our package's messages registered (when their .msg files exist).

    Returns ``(typestore, has_encoded_frame)``.
    """
    store = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
    folder = Path(msg_dir) if msg_dir else find_msg_dir()
    if folder is None or not folder.is_dir():
        return store, False
    types = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store, ENCODED_FRAME_TYPE in store.fielddefs


def _default_value(store, desc):
    """Zero value of a field description from the typestore (for fields we do not fill)."""
    kind, spec = desc
    if kind == Nodetype.BASE:
        name = spec[0]
        if name == "string":
            return ""
        if name == "bool":
            return False
        return 0.0 if name.startswith("float") else 0
    if kind == Nodetype.NAME:
        return build_message(store, spec, {})
    if kind == Nodetype.ARRAY:
        sub, length = spec
        if sub[0] == Nodetype.BASE and sub[1][0] not in ("string", "bool"):
            dtype = np.float64 if sub[1][0].startswith("float") else np.int64
            return np.zeros(length, dtype=_NUMPY_TYPES.get(sub[1][0], dtype))
        return [_default_value(store, sub) for _ in range(length)]
    # SEQUENCE
    sub, _ = spec
    if sub[0] == Nodetype.BASE and sub[1][0] not in ("string", "bool"):
        return np.zeros(0, dtype=_NUMPY_TYPES.get(sub[1][0], np.uint8))
    return []


_NUMPY_TYPES = {
    "uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32,
    "int32": np.int32, "uint64": np.uint64, "int64": np.int64, "float32": np.float32, "float64": np.float64,
    "byte": np.uint8, "char": np.uint8,
}


def build_message(store, msgtype: str, values: dict):
    """An instance of ``msgtype`` with ``values`` for the named fields and zero values for all others.

    A name in ``values`` that the type does not have is an error (ValueError): a renamed field must fail here,
    not silently write a bag without it.
    """
    _, fields = store.fielddefs[msgtype]
    extra = set(values) - {name for name, _ in fields}
    if extra:
        raise ValueError(f"{msgtype} has no field(s) {sorted(extra)} (fields: {[name for name, _ in fields]})")
    kwargs = {}
    for name, desc in fields:
        kwargs[name] = values[name] if name in values else _default_value(store, desc)
    return store.types[msgtype](**kwargs)


def _header(store, stamp_ns: int, frame_id: str):
    stamp = store.types["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
    return store.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


# ------------------------------------------------------------------------------------------- conversions
def image_msg_to_rgb(msg, msgtype: str) -> tuple[np.ndarray, str]:
    """(HxWx3 uint8 RGB, source encoding) of a sensor_msgs Image or CompressedImage message."""
    if msgtype == COMPRESSED_TYPE:
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BagError(f"cannot decode CompressedImage with format {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "bgr8"
    if msgtype != IMAGE_TYPE:
        raise BagError(f"topic type {msgtype} is not an image type ({IMAGE_TYPE}, {COMPRESSED_TYPE})")
    encoding = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3, "mono16": 1,
                "16uc1": 1}
    if encoding not in channels:
        raise BagError(f"unsupported Image encoding {msg.encoding!r}; supported: {sorted(channels)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    wide = encoding in ("mono16", "16uc1")
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2") if wide else np.dtype(np.uint8)
    row_items = width * channels[encoding]
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if step < row_items * dtype.itemsize or data.size < step * height:
        raise BagError(f"Image data too short for {width}x{height} {msg.encoding} (step {step}, {data.size} bytes)")
    rows = data[: step * height].reshape(height, step)[:, : row_items * dtype.itemsize]
    pixels = rows.copy().view(dtype).reshape(height, width, channels[encoding])  # writable, contiguous
    if wide:
        pixels = (pixels >> 8).astype(np.uint8)
    if channels[encoding] == 1:
        return np.repeat(pixels, 3, axis=2), encoding
    if encoding in ("bgr8", "bgra8", "8uc3"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3]), encoding


def rgb_to_image_msg(store, rgb: np.ndarray, stamp_ns: int, frame_id: str):
    """sensor_msgs/msg/Image (rgb8) of an HxWx3 uint8 RGB array."""
    height, width = rgb.shape[:2]
    return store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns, frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1),
    )


# ----------------------------------------------------------------------------------------------- reading
@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    count: int
    fps: float  # from the bag timestamps; nan with fewer than 2 messages


def _open_reader(path: str | Path) -> AnyReader:
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    store, _ = make_typestore()
    return AnyReader([path], default_typestore=store)


def image_topic_info(path: str | Path, topic: str | None = None) -> TopicInfo:
    """The image topic to evaluate (the only one if ``topic`` is None) with its count and frame rate."""
    with _open_reader(path) as reader:
        images = {c.topic: c for c in reader.connections if c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE)}
        if topic is None:
            if len(images) != 1:
                raise BagError(f"bag {path} has image topics {sorted(images) or 'none'}; choose one with --topic")
            topic = next(iter(images))
        if topic not in images:
            raise BagError(f"topic {topic!r} not in bag {path} as an image topic; image topics: {sorted(images)}")
        conns = [c for c in reader.connections if c.topic == topic]
        stamps = [t for _, t, _ in reader.messages(connections=conns)]
    fps = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9) if len(stamps) > 1 and stamps[-1] > stamps[0] else math.nan
    return TopicInfo(topic, images[topic].msgtype, len(stamps), fps)


def iter_bag_frames(
    path: str | Path, topic: str, stride: int = 1, max_frames: int | None = None, skip: int = 0
) -> Iterator[Frame]:
    """Frames of an image topic: every ``stride``-th message after ``skip``, at most ``max_frames``."""
    if stride < 1 or skip < 0:
        raise ValueError("stride must be >= 1 and skip >= 0")
    with _open_reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise BagError(f"topic {topic!r} not in bag {path}")
        produced = 0
        for i, (conn, timestamp, raw) in enumerate(reader.messages(connections=conns)):
            if i < skip or (i - skip) % stride:
                continue
            if max_frames is not None and produced >= max_frames:
                break
            msg = reader.deserialize(raw, conn.msgtype)
            rgb, encoding = image_msg_to_rgb(msg, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec or timestamp
            yield Frame(
                name=f"{i:06d}", image=rgb, stamp_ns=int(stamp), frame_id=msg.header.frame_id,
                source_encoding=encoding,
            )
            produced += 1


# ----------------------------------------------------------------------------------------------- writing
class EvalBagWriter:
    """Writes original / compressed / decoded topics of one codec setting (use as a context manager)."""

    def __init__(self, path: str | Path, topic: str, storage: str = "mcap"):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path, self.topic = Path(path), topic.rstrip("/") or "/image"
        if self.path.exists():
            raise BagError(f"{self.path} exists already; rosbag2 writers only create new bags")
        self.store, self.has_encoded_frame = make_typestore()
        self.writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        self.connections: dict[str, object] = {}
        self.counts = {"original": 0, "compressed": 0, "decoded": 0}
        self._logged_missing = False

    def __enter__(self) -> "EvalBagWriter":
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def _connection(self, name: str, topic: str, msgtype: str):
        if name not in self.connections:
            self.connections[name] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        return self.connections[name]

    def _write(self, name: str, topic: str, msgtype: str, msg, stamp_ns: int) -> None:
        conn = self._connection(name, topic, msgtype)
        self.writer.write(conn, stamp_ns, self.store.serialize_cdr(msg, msgtype))
        kind = name.split(":")[0]
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _roi_boxes(self, boxes) -> list:
        """RoiBox messages of (M,4) xyxy ROI boxes (labels or static: class RoiBox.STATIC_CLASS_ID, score 1)."""
        box_type = self.store.types[ROI_BOX_TYPE]
        rows = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), np.float64).reshape(-1, 4)
        return [box_type(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), class_id=LABEL_CLASS_ID,
                         class_name="label", score=1.0) for b in rows]

    def write(self, frame: Frame, codec, data: bytes, decoded: np.ndarray, record=None, boxes=None) -> None:
        """One evaluated frame: original, payload and decoded image, all stamped with the frame's stamp.

        ``boxes``: the (M,4) ROI boxes the codec used for this frame (default: the frame's label boxes), written
        into our EncodedFrame as the encoder node does.  ``record`` is accepted for the evaluation's callback;
        its numbers are in the report, not in the message (EncodedFrame carries no statistics).
        """
        stamp = frame.stamp_ns
        self._write("original", self.topic, IMAGE_TYPE, rgb_to_image_msg(self.store, frame.image, stamp, frame.frame_id), stamp)
        payload = np.frombuffer(data, np.uint8)
        header = _header(self.store, stamp, frame.frame_id)
        if getattr(codec, "codec", None) is not None and hasattr(codec, "roi_weight"):  # our RoiCodec
            if self.has_encoded_frame:
                values = {
                    "header": header, "format": RCB_FORMAT,
                    "source_encoding": frame.source_encoding if frame.source_encoding in ("rgb8", "bgr8", "mono8") else "rgb8",
                    "keyframe": True, "boxes": self._roi_boxes(boxes if boxes is not None else frame.boxes),
                    "data": payload, "sequence": self.counts["compressed"],
                }
                msg = build_message(self.store, ENCODED_FRAME_TYPE, values)
                self._write("compressed", f"{self.topic}/{ROI_CODEC_SUFFIX}", ENCODED_FRAME_TYPE, msg, stamp)
            elif not self._logged_missing:
                self._logged_missing = True
                LOG.warning("msg/EncodedFrame.msg not found: the output bag gets original and decoded topics only")
        else:
            msg = self.store.types[COMPRESSED_TYPE](header=header, format=codec.family.split()[0].lower(), data=payload)
            self._write("compressed", f"{self.topic}/{COMPRESSED_SUFFIX}", COMPRESSED_TYPE, msg, stamp)
        self._write("decoded", f"{self.topic}/{DECODED_SUFFIX}", IMAGE_TYPE,
                    rgb_to_image_msg(self.store, decoded, stamp, frame.frame_id), stamp)


# ---------------------------------------------------------------------------------------------- make-bag
def _video_frames(path: Path, rate: float | None) -> tuple[Iterator[np.ndarray], float]:
    """RGB frames of a video resampled to ``rate`` Hz (None = native) and that rate.

    Output instant k/rate shows the source frame nearest to it (repeated when rate > the video's rate).
    """
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    native = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    out_rate = float(rate or native)

    def frames():
        try:
            next_time, first = 0.0, None
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                first = t if first is None else first
                t -= first
                rgb = None
                # emit this frame for every output instant it is the nearest earlier source frame of
                while next_time < t + 0.5 / native:
                    rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
                    yield rgb
                    next_time += 1.0 / out_rate
        finally:
            container.close()

    return frames(), out_rate


def make_bag(
    source: str | Path,
    out: str | Path,
    rate: float | None = None,
    topic: str = "/camera/image_raw",
    frame_id: str = "camera",
    storage: str = "mcap",
    max_frames: int | None = None,
    start_ns: int | None = None,
    progress: bool = True,
) -> int:
    """Convert a video file or an image folder to a rosbag2 with sensor_msgs/msg/Image (rgb8) at ``rate`` Hz.

    Image folders: files in name order, one per 1/rate s (default 10 Hz). Videos: resampled to ``rate`` (default
    the video's own rate). Returns the number of messages written.
    """
    source, out = Path(source), Path(out)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if out.exists():
        raise BagError(f"{out} exists already; rosbag2 writers only create new bags")
    if source.is_dir():
        files = image_files(source)
        frames, out_rate = (read_image_rgb(p) for p in files), float(rate or 10.0)
        total = len(files)
    elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        frames, out_rate = _video_frames(source, rate)
        total = None
    else:
        raise BagError(f"{source} is neither an image folder nor a video file ({', '.join(VIDEO_SUFFIXES)})")
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    store, _ = make_typestore()
    start_ns = time.time_ns() if start_ns is None else int(start_ns)
    period_ns = 1e9 / out_rate
    count = 0
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage]) as writer:
        conn = writer.add_connection(topic, IMAGE_TYPE, typestore=store)
        for rgb in tqdm(frames, total=total, unit="frame", desc="make-bag", disable=not progress):
            if max_frames is not None and count >= max_frames:
                break
            stamp = start_ns + round(count * period_ns)
            writer.write(conn, stamp, store.serialize_cdr(rgb_to_image_msg(store, rgb, stamp, frame_id), IMAGE_TYPE))
            count += 1
    if count == 0:
        raise BagError(f"{source} produced no frames")
    return count
