"""A recorded bag of an h264 EncodedFrame stream plays in standard tools: ``roi-codec bag-video`` writes the
elementary stream, PyAV's demuxer/decoder (and the ffmpeg CLI where installed) read every frame of it, bit-exact
with our decoder; the Foxglove bag carries foxglove_msgs/CompressedVideo.  The bag is written as ``ros2 bag
record`` would store the topic (rosbags, CDR), starting mid-stream and with one message lost."""
from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pytest
from test_engine import scene

from roi_codec_ros.classical.x26x import frame_to_planes, signalled_colour
from roi_codec_ros.engine import ClassicalSettings, create_engine
from roi_codec_ros.engine.classical import REALTIME_COLOUR
from roi_codec_ros.evaluation.bags import ENCODED_FRAME_TYPE, build_message, make_typestore
from roi_codec_ros.evaluation.metrics import psnr
from roi_codec_ros.tools.bag_video import FOXGLOVE_TYPE, main

H, W, TOPIC = 75, 121, "/camera/image_raw/roi_codec"  # odd sizes: coded as 122x76, display size in the SEI


def _record(path, frames, skip_sequences=()):
    from rosbags.rosbag2 import StoragePlugin, Writer

    store, ok = make_typestore()
    assert ok
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    with writer:
        conn = writer.add_connection(TOPIC, ENCODED_FRAME_TYPE, typestore=store)
        for seq, frame in frames:
            if seq in skip_sequences:
                continue
            stamp = 1_000_000_000 + seq * 100_000_000  # 10 Hz
            header = store.types["std_msgs/msg/Header"](
                stamp=store.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
            msg = build_message(store, ENCODED_FRAME_TYPE, {
                "header": header, "format": frame.format, "source_encoding": "rgb8", "keyframe": frame.keyframe,
                "data": np.frombuffer(frame.data, np.uint8), "sequence": seq})
            writer.write(conn, stamp, store.serialize_cdr(msg, ENCODED_FRAME_TYPE))


def test_recorded_h264_stream_plays_in_standard_tools(tmp_path, capsys):
    engine = create_engine("x264", classical=ClassicalSettings(scenecut=False))
    encoder, decoder = engine.stream_encoder(keyframe_interval=5), engine.stream_decoder()
    frames = [(t, encoder.encode(scene(t, H, W), rate=0.7)) for t in range(16)]
    ours = {t: decoder.decode(f.data) for t, f in frames}
    # recording starts at frame 2 (mid-GOP) and loses frame 11: frames 2-4 and 11-14 cannot play
    _record(tmp_path / "bag", frames[2:], skip_sequences={11})
    out, fox = tmp_path / "camera.h264", tmp_path / "fox"
    assert main(["bag-video", str(tmp_path / "bag"), str(out), "--foxglove", str(fox)]) == 0
    printed = capsys.readouterr().out
    assert "7 h264 frames" in printed and "3 keyframes" in printed and "6 left out" in printed and "1 sequence gaps" in printed
    assert "display size 121x75" in printed and "ffplay" in printed
    expected = [5, 6, 7, 8, 9, 10, 15]  # from the first keyframe (5); after the lost 11, from the next one (15)

    # PyAV: the raw h264 demuxer and libavcodec, as ffplay / ffmpeg read the file
    with av.open(str(out), format="h264") as container:
        pictures = list(container.decode(video=0))
    assert len(pictures) == len(expected)
    for t, picture in zip(expected, pictures):
        assert (picture.width, picture.height) == (W + 1, H + 1)  # standard players show the coded size
        rgb = signalled_colour(picture, REALTIME_COLOUR).planes_to_rgb(frame_to_planes(picture))[:H, :W]
        assert np.array_equal(rgb, ours[t])  # bit-exact with our decoder (which crops to the SEI's size)
        assert psnr(scene(t, H, W), rgb) > 30

    # Foxglove: CompressedVideo messages, one access unit each, format h264
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_types_from_msg

    from roi_codec_ros.tools.bag_video import FOXGLOVE_MSG

    store, _ = make_typestore()
    store.register(get_types_from_msg(FOXGLOVE_MSG, FOXGLOVE_TYPE))
    with AnyReader([fox], default_typestore=store) as reader:
        videos = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert [v.format for v in videos] == ["h264"] * len(expected)
    assert b"".join(bytes(v.data) for v in videos) == out.read_bytes()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg CLI is not installed")
def test_ffmpeg_cli_decodes_the_extracted_stream(tmp_path):
    engine = create_engine("x264")
    encoder = engine.stream_encoder(keyframe_interval=4)
    frames = [(t, encoder.encode(scene(t, H, W), rate=0.6)) for t in range(9)]
    _record(tmp_path / "bag", frames)
    out = tmp_path / "camera.h264"
    assert main([str(tmp_path / "bag"), str(out)]) == 0
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                         capture_output=True, timeout=120)
    assert raw.returncode == 0, raw.stderr.decode(errors="replace")
    frame_bytes = (W + 1) * (H + 1) * 3 // 2
    assert len(raw.stdout) == len(frames) * frame_bytes  # every frame, at the coded size
    cropped = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-vf", f"format=rgb24,crop={W}:{H}:0:0", "-f", "rawvideo",
                              "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=120)
    assert cropped.returncode == 0 and len(cropped.stdout) == len(frames) * W * H * 3
    first = np.frombuffer(cropped.stdout[: W * H * 3], np.uint8).reshape(H, W, 3)
    assert psnr(scene(0, H, W), first) > 28  # the CLI's own conversion (honours the signalled full range)


def test_bag_video_refuses_what_it_cannot_play(tmp_path, capsys, random_codec):
    class Rcb:
        format, keyframe = "rcb1", True

        def __init__(self, data):
            self.data = data

    _record(tmp_path / "rcb", [(0, Rcb(random_codec.encode(scene(0, 32, 48)).data))])
    assert main([str(tmp_path / "rcb"), str(tmp_path / "x.h264")]) == 1
    assert "only h264/hevc streams play" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), str(tmp_path / "x.h264")]) == 1
