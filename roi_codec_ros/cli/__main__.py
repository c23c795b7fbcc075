"""``python -m roi_codec_ros.cli <command> ...`` (what torchrun runs for DDP training)."""
import sys

from . import main

sys.exit(main())
