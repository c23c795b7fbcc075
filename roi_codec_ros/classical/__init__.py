"""Classical codecs shared by the evaluation baselines and (later) the real-time x264/x265 engine of the nodes.

``colour``: RGB <-> Y'CbCr with a chosen matrix, range and chroma filters (``ColourConversion``).
``x26x``: ``X26xEncoder`` / ``X26xDecoder`` around PyAV's libx264/libx265 with per-frame ROI regions
(FFmpeg ROI side data, as the ``addroi`` filter attaches) and keyframe requests.
"""
from .colour import ColourConversion
from .x26x import (
    Packet,
    RoiRegion,
    X26xConfig,
    X26xDecoder,
    X26xEncoder,
    pad_to_even,
    regions_from_boxes,
    strip_sei,
)

__all__ = ["ColourConversion", "Packet", "RoiRegion", "X26xConfig", "X26xDecoder", "X26xEncoder", "pad_to_even",
           "regions_from_boxes", "strip_sei"]
