"""``roi-codec bag-video``: a recorded EncodedFrame topic of an h264/hevc engine -> a file standard tools play.

    ros2 bag record /camera/image_raw/roi_codec                     (the x264 engine's stream)
    roi-codec bag-video BAG camera.h264 [--topic /camera/image_raw/roi_codec] [--foxglove OUT_BAG]
    ffplay camera.h264          ffmpeg -framerate 10 -i camera.h264 -c copy camera.mp4

Each EncodedFrame's ``data`` (format h264 / hevc) is one Annex-B access unit, so the ``data`` of consecutive
messages is an elementary stream.  Written from the first keyframe on; after a gap in ``sequence`` (messages the
recorder lost) frames are left out until the next keyframe, so no player decodes an inter frame against the wrong
picture.  Odd camera sizes play one row/column larger (4:2:0 needs even sizes; the true size is in a user-data SEI
that our decoder crops to; ffmpeg: ``-vf format=rgb24,crop=W:H:0:0``, 4:2:0 itself cannot be odd).  ``--foxglove`` also writes the frames as
``foxglove_msgs/msg/CompressedVideo`` (format h264 / h265) into a new mcap bag, which Foxglove plays as video.
No ROS installation is needed (rosbags).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = {"h264": "h264", "hevc": "h265"}  # EncodedFrame.format -> foxglove CompressedVideo.format
FOXGLOVE_TYPE = "foxglove_msgs/msg/CompressedVideo"
FOXGLOVE_MSG = "builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n"  # foxglove_msgs 3.x


@dataclass
class Extracted:
    topic: str
    format: str
    written: int = 0
    skipped_before_keyframe: int = 0  # frames before the first keyframe / after a gap
    gaps: int = 0
    keyframes: int = 0
    display_size: tuple[int, int] | None = None  # from the SEI (odd sizes only)
    fps: float = float("nan")
    stamps_ns: list[int] = field(default_factory=list)


def _encoded_frame_topic(reader, topic: str | None) -> str:
    from roi_codec_ros.evaluation.bags import ENCODED_FRAME_TYPE

    topics = sorted({c.topic for c in reader.connections if c.msgtype == ENCODED_FRAME_TYPE})
    if topic is None:
        if len(topics) != 1:
            raise ValueError(f"the bag has EncodedFrame topics {topics or 'none'}; choose one with --topic")
        return topics[0]
    if topic not in topics:
        raise ValueError(f"{topic!r} is no EncodedFrame topic of the bag; EncodedFrame topics: {topics or 'none'}")
    return topic


def extract(bag: str | Path, out: str | Path, topic: str | None = None, foxglove: str | Path | None = None) -> Extracted:
    """Write the h264/hevc stream of ``topic`` to ``out`` (and a Foxglove bag); ValueError for what cannot be done."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    from roi_codec_ros.engine import annexb
    from roi_codec_ros.evaluation.bags import make_typestore

    store, has_type = make_typestore()
    if not has_type:
        raise ValueError("msg/EncodedFrame.msg not found (run from the repository or an installed package)")
    bag = Path(bag)
    if not bag.exists():
        raise ValueError(f"bag not found: {bag}")
    writer = None
    if foxglove is not None:
        if Path(foxglove).exists():
            raise ValueError(f"{foxglove} exists already; rosbag2 writers only create new bags")
        store.register(get_types_from_msg(FOXGLOVE_MSG, FOXGLOVE_TYPE))
        writer = Writer(Path(foxglove), version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    with AnyReader([bag], default_typestore=store) as reader:
        topic = _encoded_frame_topic(reader, topic)
        conns = [c for c in reader.connections if c.topic == topic]
        result, last_sequence, in_sync = None, None, False
        connection = None
        with open(out, "wb") as stream:
            if writer is not None:
                writer.open()
                connection = writer.add_connection(f"{topic}/foxglove", FOXGLOVE_TYPE, typestore=store)
            try:
                for conn, timestamp, raw in reader.messages(connections=conns):
                    msg = reader.deserialize(raw, conn.msgtype)
                    if result is None:
                        if msg.format not in FORMATS:
                            raise ValueError(f"{topic} carries format {msg.format!r}; only h264/hevc streams play in "
                                             "standard tools (rcb1 frames decode with roi-codec decode / the decoder node)")
                        result = Extracted(topic, msg.format)
                    elif msg.format != result.format:
                        raise ValueError(f"{topic} changes format from {result.format} to {msg.format}")
                    if last_sequence is not None and msg.sequence != last_sequence + 1:
                        result.gaps += 1
                        in_sync = False
                    last_sequence = msg.sequence
                    if msg.keyframe:
                        in_sync = True
                    if not in_sync:
                        result.skipped_before_keyframe += 1
                        continue
                    data = bytes(msg.data)
                    stream.write(data)
                    result.written += 1
                    result.keyframes += bool(msg.keyframe)
                    stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec or timestamp
                    result.stamps_ns.append(int(stamp))
                    if msg.keyframe and result.display_size is None:
                        result.display_size = annexb.read_size_sei(data, "h264" if msg.format == "h264" else "hevc")
                    if writer is not None:
                        time = store.types["builtin_interfaces/msg/Time"](sec=msg.header.stamp.sec,
                                                                        nanosec=msg.header.stamp.nanosec)
                        video = store.types[FOXGLOVE_TYPE](timestamp=time, frame_id=msg.header.frame_id, data=msg.data,
                                                           format=FORMATS[msg.format])
                        writer.write(connection, timestamp, store.serialize_cdr(video, FOXGLOVE_TYPE))
            finally:
                if writer is not None:
                    writer.close()
    if result is None or result.written == 0:
        raise ValueError(f"{topic}: no keyframe in the bag, nothing a player could start from")
    stamps = result.stamps_ns
    if len(stamps) > 1 and stamps[-1] > stamps[0]:
        result.fps = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roi-codec bag-video", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder (mcap or sqlite3) with an EncodedFrame topic of format h264/hevc")
    parser.add_argument("out", help="elementary stream to write (.h264 / .hevc)")
    parser.add_argument("--topic", help="EncodedFrame topic (default: the bag's only one)")
    parser.add_argument("--foxglove", metavar="OUT_BAG", help="also write foxglove_msgs/CompressedVideo to this new mcap bag")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bag-video":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        r = extract(args.bag, args.out, args.topic, args.foxglove)
    except (ValueError, OSError) as err:
        print(f"roi-codec bag-video: error: {err}", file=sys.stderr)
        return 1
    fps = f"{r.fps:.3g}" if r.fps == r.fps else "10"
    size = (f"; display size {r.display_size[0]}x{r.display_size[1]} (coded one row/column larger; to RGB at that size: "
            f"ffmpeg -i {args.out} -vf format=rgb24,crop={r.display_size[0]}:{r.display_size[1]}:0:0 ...)") if r.display_size else ""
    print(f"{args.out}: {r.written} {r.format} frames from {r.topic} ({r.keyframes} keyframes, {r.skipped_before_keyframe} "
          f"left out before a keyframe, {r.gaps} sequence gaps), {fps} fps{size}")
    print(f"play: ffplay -framerate {fps} {args.out}    convert: ffmpeg -framerate {fps} -i {args.out} -c copy out.mp4")
    if args.foxglove:
        print(f"foxglove: {args.foxglove} ({r.topic}/foxglove, foxglove_msgs/msg/CompressedVideo)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
