"""rosbag2 round trip without ROS: generated frames -> make-bag -> eval-bag -> output bag readable with rosbags."""
from __future__ import annotations

import fractions
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from roi_codec_ros.cli import main as roi_codec
from roi_codec_ros.evaluation.bags import (
    COMPRESSED_TYPE,
    ENCODED_FRAME_TYPE,
    IMAGE_TYPE,
    RCB_FORMAT,
    BagError,
    build_message,
    image_msg_to_rgb,
    image_topic_info,
    iter_bag_frames,
    make_bag,
    make_typestore,
)

H, W, N = 72, 96, 6


def synthetic_frame(i: int) -> np.ndarray:
    """A gradient background with a red square moving right (RGB)."""
    image = np.full((H, W, 3), 90, np.uint8)
    image[:, :, 1] = (np.arange(W) * 2)[None, :]
    image[20:50, 10 + 5 * i : 40 + 5 * i] = (250, 30, 30)
    return image


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for i in range(N):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(synthetic_frame(i), cv2.COLOR_RGB2BGR))
    return folder


def read_topics(path: Path) -> dict[str, list]:
    """topic -> [(msgtype, message)] of a bag, read with rosbags' AnyReader (embedded definitions)."""
    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append((conn.msgtype, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_from_image_folder(image_folder, tmp_path, storage):
    bag = tmp_path / "in"
    assert make_bag(image_folder, bag, rate=5.0, storage=storage, start_ns=10**18, progress=False) == N
    info = image_topic_info(bag)
    assert (info.topic, info.msgtype, info.count) == ("/camera/image_raw", IMAGE_TYPE, N)
    assert info.fps == pytest.approx(5.0)
    frames = list(iter_bag_frames(bag, info.topic, stride=2))
    assert len(frames) == N // 2
    np.testing.assert_array_equal(frames[1].image, synthetic_frame(2))
    assert frames[1].stamp_ns == 10**18 + 400_000_000
    with pytest.raises(BagError, match="exists"):
        make_bag(image_folder, bag, progress=False)


def test_make_bag_from_video_resamples_to_the_chosen_rate(tmp_path):
    import av

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:  # 20 frames at 25 fps = 0.8 s
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = fractions.Fraction(1, 25)
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i % N), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    bag = tmp_path / "video_bag"
    # 10 Hz over 0.8 s: t = 0.0, 0.1, ... 0.7 -> 8 frames
    assert make_bag(video, bag, rate=10.0, progress=False) == 8
    assert image_topic_info(bag).fps == pytest.approx(10.0)


def test_eval_bag_writes_a_readable_output_bag_with_our_message(image_folder, tmp_path, random_codec):
    bag, out_bag, report = tmp_path / "in", tmp_path / "out", tmp_path / "report"
    make_bag(image_folder, bag, rate=5.0, progress=False)
    code = roi_codec(["eval-bag", str(bag), "--codec", "ours:random", "--codec", "jpeg:q=50", "--rates", "0.3,0.9",
                      "--roi-weights", "1", "--no-detector", "--no-msssim", "--quiet", "--out", str(report),
                      "--max-frames", "2", "--out-bag", str(out_bag), "--out-setting", "ours α=1 rate=0.9"])
    assert code == 0
    topics = read_topics(out_bag)
    # our codec's frames on <topic>/roi_codec, as encoder_node publishes them (never on .../compressed)
    assert sorted(topics) == ["/camera/image_raw", "/camera/image_raw/decoded", "/camera/image_raw/roi_codec"]
    assert all(len(messages) == 2 for messages in topics.values())
    assert {msgtype for msgtype, _ in topics["/camera/image_raw/roi_codec"]} == {ENCODED_FRAME_TYPE}
    encoded = [msg for _, msg in topics["/camera/image_raw/roi_codec"]]
    assert [(m.format, m.keyframe, m.sequence, m.source_encoding) for m in encoded] == [(RCB_FORMAT, True, 0, "rgb8"),
                                                                                      (RCB_FORMAT, True, 1, "rgb8")]
    assert encoded[0].header.stamp == topics["/camera/image_raw"][0][1].header.stamp
    # size, rate and model are in the bitstream (read_header checks the model hash)
    header = random_codec.read_header(bytes(encoded[0].data))
    assert (header.height, header.width) == (H, W) and header.rate == pytest.approx(0.9, abs=1e-4)
    decoded_msg = topics["/camera/image_raw/decoded"][0][1]
    decoded, _ = image_msg_to_rgb(decoded_msg, IMAGE_TYPE)
    # the payload in the bag is the real bitstream: decoding it again gives the decoded topic's image
    np.testing.assert_array_equal(random_codec.decode(bytes(encoded[0].data)), decoded)
    original, _ = image_msg_to_rgb(topics["/camera/image_raw"][0][1], IMAGE_TYPE)
    np.testing.assert_array_equal(original, synthetic_frame(0))
    summary = json.loads((report / "report.json").read_text())["summary"]
    assert {row["family"] for row in summary} == {"ours α=1", "JPEG"}
    assert all(row["frames"] == 2 for row in summary)


def test_eval_bag_baseline_goes_out_as_compressed_image(image_folder, tmp_path):
    bag, out_bag = tmp_path / "in", tmp_path / "out"
    make_bag(image_folder, bag, rate=5.0, storage="sqlite3", progress=False)
    assert roi_codec(["eval-bag", str(bag), "--codec", "jpeg:q=60", "--no-detector", "--no-msssim", "--quiet",
                      "--max-frames", "3", "--out", str(tmp_path / "r"), "--out-bag", str(out_bag),
                      "--out-storage", "sqlite3"]) == 0
    topics = read_topics(out_bag)
    msgtype, msg = topics["/camera/image_raw/compressed"][0]
    assert msgtype == COMPRESSED_TYPE and msg.format == "jpeg"
    jpeg = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    decoded, _ = image_msg_to_rgb(topics["/camera/image_raw/decoded"][0][1], IMAGE_TYPE)
    np.testing.assert_array_equal(jpeg, decoded)
    assert len(topics["/camera/image_raw/decoded"]) == 3


def test_without_our_message_definition_the_output_bag_skips_the_compressed_topic(tmp_path, monkeypatch):
    from roi_codec_ros.evaluation import bags

    store, has_frame = make_typestore(tmp_path)  # a folder without .msg files
    assert not has_frame
    monkeypatch.setattr(bags, "make_typestore", lambda msg_dir=None: (store, False))

    class FakeOurs:  # quacks like OursCodec for the writer
        codec, roi_weight, rate, family = object(), 1.0, 0.5, "ours α=1"

    frame = bags.Frame(name="0", image=synthetic_frame(0), stamp_ns=123)
    with bags.EvalBagWriter(tmp_path / "out", "/cam") as writer:
        writer.write(frame, FakeOurs(), b"payload", synthetic_frame(0))
    assert sorted(read_topics(tmp_path / "out")) == ["/cam", "/cam/decoded"]


def test_encoded_frames_carry_the_roi_boxes_and_unknown_fields_are_errors(tmp_path, random_codec):
    from roi_codec_ros.evaluation import bags

    class Ours:  # quacks like OursCodec for the writer
        codec, roi_weight, rate, family = random_codec, 8.0, 0.5, "ours"

    image = synthetic_frame(0)
    data = random_codec.encode(image, rate=0.5).data
    labelled = bags.Frame(name="0", image=image, stamp_ns=5, boxes=np.array([[10.0, 20.0, 40.0, 50.0]]))
    with bags.EvalBagWriter(tmp_path / "out", "/cam/image_raw") as writer:
        writer.write(labelled, Ours(), data, image)
        writer.write(labelled, Ours(), data, image, boxes=np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]))
    frames = [msg for _, msg in read_topics(tmp_path / "out")["/cam/image_raw/roi_codec"]]
    assert [(b.x1, b.y2, b.class_id) for b in frames[0].boxes] == [(10.0, 50.0, -1)]
    assert [(b.x1, b.y2) for b in frames[1].boxes] == [(1.0, 4.0), (5.0, 8.0)] and frames[1].sequence == 1
    assert bytes(frames[0].data) == data
    store, _ = make_typestore()
    with pytest.raises(ValueError, match="no field.*codec_id"):
        build_message(store, ENCODED_FRAME_TYPE, {"codec_id": "x"})  # a field the message no longer has


def test_image_encodings_are_converted_to_rgb():
    store, _ = make_typestore()
    rgb = synthetic_frame(1)
    image_type = store.types[IMAGE_TYPE]
    header = store.types["std_msgs/msg/Header"](stamp=store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                                 frame_id="c")

    def msg(encoding, array, step):
        return image_type(header=header, height=H, width=W, encoding=encoding, is_bigendian=0, step=step,
                          data=np.ascontiguousarray(array).reshape(-1).view(np.uint8))

    bgr = np.pad(rgb[..., ::-1], ((0, 0), (0, 2), (0, 0)))  # rows padded: step > width * 3
    assert np.array_equal(image_msg_to_rgb(msg("bgr8", bgr, (W + 2) * 3), IMAGE_TYPE)[0], rgb)
    gray = rgb[..., 1]
    assert np.array_equal(image_msg_to_rgb(msg("mono8", gray, W), IMAGE_TYPE)[0], np.repeat(gray[..., None], 3, 2))
    with pytest.raises(BagError, match="unsupported Image encoding"):
        image_msg_to_rgb(msg("bayer_rggb8", gray, W), IMAGE_TYPE)


def test_missing_bag_and_wrong_topic_are_clear_errors(tmp_path, image_folder):
    with pytest.raises(BagError, match="not found"):
        image_topic_info(tmp_path / "nope")
    bag = tmp_path / "in"
    make_bag(image_folder, bag, progress=False, max_frames=2)
    with pytest.raises(BagError, match="image topics"):
        image_topic_info(bag, "/other")
    assert roi_codec(["eval-bag", str(bag), "--topic", "/other", "--no-detector", "--quiet"]) == 2
