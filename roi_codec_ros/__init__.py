"""roi_codec_ros: ROI-aware learned image compression for teleoperated driving.

Data flow: camera frame -> detector adapter (features, boxes) -> ROI mask -> codec (model + bitstream)
-> message -> decoder -> image.  The codec core (``codec``, ``detector``, ``training``, ``evaluation``)
imports no ROS module; ``nodes`` and ``tools`` are thin ROS adapters.
"""
import pkgutil
import warnings

# CompressAI 1.2.8 uses torch.jit.script at import time; torch 2.14 warns about it on every run.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)

# The generated ROS message module ``roi_codec_ros.msg`` is built by rosidl into another
# site-packages directory (the venv or a colcon install); let it join this package.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
