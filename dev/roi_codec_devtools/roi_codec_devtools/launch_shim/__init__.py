"""Minimal stand-ins for the ``launch`` and ``launch_ros`` Python packages.

Used ONLY by ``roi-launch`` (roi_codec_devtools/launch_runner.py) and ONLY when the real packages cannot be
imported (they are not on PyPI): the runner puts this directory on ``sys.path`` inside its own process.  They
implement the subset our launch files use, with the real semantics; anything else raises NotImplementedError
naming the missing feature.  (This file only makes the folder a package so pip installs it.)
"""
