"""ROS transport overhead of the codec pipeline for 1242x375 (KITTI-sized) frames.

    . scripts/env.sh && python benchmarks/ros_transport_overhead.py [--frames 20] [--fps 1] [--model random]

Starts launch/pipeline.launch.py with roi-launch (pip-only setup, dev/roi_codec_devtools; `ros2 launch` in a ROS
install): frame_source resizing the bundled sample images to 1242x375, encoder_node, decoder_node, detector off
unless --detector is given; and watches it with roi_codec_ros.tools.pipeline_monitor.  Per decoded frame:

    end-to-end = decoded image received by the monitor - source stamp (one clock: same machine)
    codec      = detector + encode + decode                (from the nodes' statistics)
    overhead   = end-to-end - codec
      in nodes      = encoder (wait + conversion + publish) + decoder (wait + conversion + publish)
      between nodes = end-to-end - encoder total - decoder total   (3 DDS hops + executor dispatch)

Keep --fps below the codec's frame rate, or "in nodes" includes waiting for a busy worker (latest-frame-wins).
Every number printed is measured in this run; nothing is estimated.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys
import time

import numpy as np

from roi_codec_ros.codec import DEFAULT_MODEL_PATH
from roi_codec_ros.tools.pipeline_monitor import PipelineMonitor, latency_table, start_pipeline, stop_pipeline

WIDTH, HEIGHT = 1242, 375


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20, help="decoded frames to measure (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="first decoded frames not counted (default %(default)s)")
    parser.add_argument("--fps", type=float, default=1.0, help="source frame rate (default %(default)s)")
    parser.add_argument("--model", default="default" if DEFAULT_MODEL_PATH.is_file() else "random",
                        help="codec model: 'default' (shipped), 'random' (untrained, small) or a file (default %(default)s)")
    parser.add_argument("--detector", default="none", help="detector weights ('none', 'default' or a .pt; default %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    namespace = f"bench_{os.getpid()}"
    log = Path(f"/tmp/ros_transport_overhead_{os.getpid()}.log")
    print(f"pipeline: {WIDTH}x{HEIGHT} rgb8 at {args.fps:g} fps, model {args.model}, detector {args.detector}, "
          f"RMW {os.environ.get('RMW_IMPLEMENTATION', 'default')}, Fast DDS profile {os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', 'none')}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    proc = start_pipeline(namespace, [f"model_path:={args.model}", f"detector_weights:={args.detector}", "input:=bundled",
                                      f"fps:={args.fps}", f"width:={WIDTH}", f"height:={HEIGHT}", "overlay:=false"], log)
    monitor = PipelineMonitor(namespace, with_psnr=False)
    wanted = args.frames + args.warmup
    deadline = time.monotonic() + args.timeout
    try:
        while len(monitor.records) < wanted and time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"pipeline exited early (code {proc.returncode}), log: {log}", file=sys.stderr)
                return 1
            monitor.process()
            time.sleep(0.1)
        records = monitor.records[args.warmup : wanted]
        if len(records) < args.frames:
            print(f"timed out with {len(records)} of {args.frames} frames, log: {log}", file=sys.stderr)
            return 1
        sizes = np.array([r.num_bytes for r in records])
        print(f"{len(records)} frames measured (after {args.warmup} warm-up), compressed size mean {sizes.mean():.0f} B "
              f"({np.mean([r.bpp for r in records]):.3f} bpp), raw frame {WIDTH * HEIGHT * 3} B")
        for name, values in latency_table(records):
            v = np.array(values)
            print(f"  {name:<28}median {np.median(v):8.1f} ms   mean {v.mean():8.1f} ms   p90 {np.percentile(v, 90):8.1f} ms")
        s = monitor.last_encoder_stats
        if s is not None:
            print(f"  encoder counters: received {s.frames_received}, encoded {s.frames_encoded}, dropped {s.frames_dropped}")
        overhead = np.array([r.overhead_ms for r in records])
        print(f"ROS transport overhead (end-to-end - codec), {WIDTH}x{HEIGHT}: median {np.median(overhead):.1f} ms, "
              f"mean {overhead.mean():.1f} ms")
        return 0
    finally:
        monitor.close()
        stop_pipeline(proc)


if __name__ == "__main__":
    sys.exit(main())
