"""Detector adapter: one pass of the vehicle's YOLO model gives the codec its features *and* the ROI boxes.

::

    frame (HxWx3 RGB uint8)
      |  letterbox (ultralytics LetterBox; geometry kept)        -> input (1,3,Hi,Wi), e.g. 1920x1080 -> 640x384
      v
    YOLO backbone + neck --- forward hooks on the layers in Detect.f (yolov8: model.model[15], [18], [21])
      |                          |  P3/8 (1,64,Hi/8,Wi/8)  P4/16 (1,128,..)  P5/32 (1,256,..)   (yolov8n widths)
      v                          v
    Detect head -> NMS ->     crop the letterbox padding (roi_align)  -> features: frame-aligned [f8, f16, f32]
    boxes in input pixels -> scale_boxes(ratio_pad) -> detections: boxes in frame pixels, class ids, scores, names

The torch model is called directly (not ``YOLO.predict``) so that letterboxing, devices and threads stay under
our control; ultralytics' own ``LetterBox``, ``non_max_suppression`` and ``scale_boxes`` do the standard parts,
so the boxes match ``predict()`` on the same image.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from roi_codec_ros.devices import resolve_device
from roi_codec_ros.files import file_sha256

from .detections import Detections
from .geometry import LetterboxGeometry, check_image, crop_features_to_frame, letterbox
from .roi_mask import RoiMaskConfig, roi_mask_from_detections

WEIGHTS_ENV = "ROI_CODEC_DETECTOR_WEIGHTS"


class DetectorWeightsError(FileNotFoundError):
    """Detector weights are missing or unusable; the message says how to provide them."""


def _how_to_provide(path: str | os.PathLike | None) -> str:
    what = f"Detector weights not found: {str(path)!r}." if path else f"No detector weights given and {WEIGHTS_ENV} is not set."
    return (
        f"{what} The adapter reuses the vehicle's own YOLO (ultralytics) weights; provide a .pt file with "
        f"`roi-codec detect --weights PATH` / `DetectorAdapter.from_weights(PATH)`, or set {WEIGHTS_ENV}=PATH. "
        "Official weights by name (e.g. 'yolov8n.pt') are downloaded only with allow_download=True and network "
        "access (YOLO_OFFLINE unset). An untrained model for tests is built only on request: "
        "DetectorAdapter.random_init('yolov8n.yaml')."
    )


def default_weights_path() -> Path | None:
    """The deployment's detector weights, ``$ROI_CODEC_DETECTOR_WEIGHTS``, or None when it is not set.

    The package never guesses a path: which detector a vehicle runs is configuration, not a file layout.
    """
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else None


@contextlib.contextmanager
def keep_torch_threads():
    """Restore torch's intra-op thread count if anything inside (ultralytics) changed it."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def coco_names() -> dict[int, str]:
    """The 80 COCO class names shipped with ultralytics (for random-initialised test models)."""
    from ultralytics.utils import ROOT, YAML

    return {int(k): str(v) for k, v in YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"].items()}


@dataclass
class DetectorResult:
    """One frame's detector pass.

    features: [f8, f16, f32] float32 tensors (1,C,h,w) on the adapter's device, covering exactly the frame
        (letterbox padding resampled away; h, w = ``geometry.feature_size(stride)``).
    detections: boxes in frame pixels.
    latency_ms: wall time of the whole call (letterbox, forward, NMS, crops), device synchronised.
    geometry: where the frame sat in the detector input, for exact mapping of anything else.
    """

    features: list[torch.Tensor]
    detections: Detections
    latency_ms: float
    geometry: LetterboxGeometry
    strides: tuple[int, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def roi_mask(self, config: RoiMaskConfig | None = None, shape_hw: tuple[int, int] | None = None) -> np.ndarray:
        """ROI mask for this frame (or for the frame resized to ``shape_hw``)."""
        frame_hw = self.geometry.frame_hw
        det = self.detections if shape_hw is None else self.detections.rescaled(frame_hw, shape_hw)
        return roi_mask_from_detections(det, shape_hw or frame_hw, config)


class DetectorAdapter:
    """Runs an ultralytics YOLO detection model once per frame and returns features + detections.

    Build with ``from_weights`` (the vehicle's ``.pt``) or, for tests only, ``random_init``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        names: dict[int, str] | None = None,
        device: str | torch.device = "cpu",
        imgsz: int | tuple[int, int] = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        rect: bool = True,
        half: bool = False,
        weights_path: str | os.PathLike | None = None,
        weights_sha256: str | None = None,
        source: str = "",
    ):
        from ultralytics.nn.modules.head import OBB, Detect

        head = model.model[-1] if hasattr(model, "model") else None
        if not isinstance(head, Detect) or isinstance(head, OBB):
            raise ValueError(
                f"DetectorAdapter needs an ultralytics detection model with a Detect head, got "
                f"{type(head).__name__ if head is not None else type(model).__name__}"
            )
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        self.device = resolve_device(device)
        self.half = bool(half and self.device.type == "cuda")
        self.model = model.to(self.device).eval()
        if self.half:
            self.model.half()
        self.head = head
        self.names: dict[int, str] = {int(k): str(v) for k, v in (names or model.names).items()}
        self.imgsz = imgsz
        self.conf, self.iou, self.max_det, self.rect = float(conf), float(iou), int(max_det), bool(rect)
        self.weights_path = None if weights_path is None else str(weights_path)
        self.weights_sha256 = weights_sha256
        self.source = source or (f"sha256:{weights_sha256}" if weights_sha256 else "unknown")
        self.feature_layers: tuple[int, ...] = tuple(int(i) for i in head.f)
        self.strides: tuple[int, ...] = tuple(int(s) for s in head.stride.tolist())
        self._task = getattr(model, "task", "detect")
        self._captured: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()  # the hooks write into self._captured: one pass at a time
        self._hooks = [self.model.model[i].register_forward_hook(self._hook(i)) for i in self.feature_layers]
        # One tiny pass: learns the feature widths and pays one-off costs (lazy imports, NMS/roi_align set-up)
        # here rather than in the first frame's latency.
        s = max(self.strides)
        warm = self(np.zeros((2 * s, 2 * s, 3), np.uint8))
        self.feature_channels: tuple[int, ...] = tuple(int(f.shape[1]) for f in warm.features)

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_weights(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        imgsz: int | tuple[int, int] = 640,
        allow_download: bool = False,
        **kwargs,
    ) -> "DetectorAdapter":
        """Load the vehicle's ultralytics ``.pt`` (``path=None``: ``$ROI_CODEC_DETECTOR_WEIGHTS``).

        Raises ``DetectorWeightsError`` (a FileNotFoundError) explaining how to provide weights when the file is
        missing; never falls back to an untrained model.
        """
        path = path if path is not None else default_weights_path()
        if path is None:
            raise DetectorWeightsError(_how_to_provide(None))
        p = Path(path)
        if p.suffix.lower() in (".yaml", ".yml"):
            raise ValueError(
                f"{str(path)!r} is a model definition, not trained weights. An untrained detector is only built "
                f"when asked for explicitly: DetectorAdapter.random_init({str(path)!r}) (tests only)."
            )
        if not p.is_file():
            p = cls._download(path) if allow_download else None
            if p is None:
                raise DetectorWeightsError(_how_to_provide(path))
        from ultralytics.nn.tasks import load_checkpoint

        with keep_torch_threads():
            try:
                model, _ = load_checkpoint(str(p), device="cpu", fuse=True)
            except Exception as e:  # noqa: BLE001 - re-raised with the file named and the fix
                raise DetectorWeightsError(
                    f"Could not load detector weights {str(p)!r} ({type(e).__name__}: {e}). "
                    "Expected an ultralytics YOLO detection checkpoint (.pt saved by ultralytics)."
                ) from e
        sha = file_sha256(p)
        return cls(model, device=device, imgsz=imgsz, weights_path=p, weights_sha256=sha, **kwargs)

    @staticmethod
    def _download(name: str | os.PathLike) -> Path | None:
        """Official ultralytics weights by bare name, only when online; None otherwise."""
        from ultralytics.utils import is_online

        if os.sep in str(name) or not str(name).endswith(".pt") or not is_online():
            return None
        from ultralytics.utils.downloads import attempt_download_asset

        try:
            p = Path(attempt_download_asset(str(name)))
        except Exception:  # noqa: BLE001 - reported as missing weights by the caller
            return None
        return p if p.is_file() else None

    @classmethod
    def random_init(
        cls,
        cfg: str = "yolov8n.yaml",
        seed: int = 0,
        nc: int | None = 80,
        names: dict[int, str] | None = None,
        device: str | torch.device = "cpu",
        imgsz: int | tuple[int, int] = 640,
        **kwargs,
    ) -> "DetectorAdapter":
        """An UNTRAINED model from an ultralytics model yaml (tests, shapes). Detections are meaningless.

        Names default to COCO's when ``nc == 80``. Seeded without disturbing the global RNG.
        """
        from ultralytics.nn.tasks import DetectionModel

        with keep_torch_threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DetectionModel(cfg, nc=nc, verbose=False)
        model = model.fuse(verbose=False).eval()
        if names is None:
            names = coco_names() if len(model.names) == 80 else dict(model.names)
        return cls(model, names=names, device=device, imgsz=imgsz, source=f"random-init:{cfg}:seed={seed}", **kwargs)

    # --------------------------------------------------------------------------------------------- running
    @property
    def _dtype(self) -> torch.dtype:
        return torch.float16 if self.half else torch.float32

    @property
    def detector_id(self) -> str:
        """What produced the features: ``sha256:<hex>`` of the weights file, or the random-init recipe."""
        return self.source

    def _hook(self, index: int):
        def hook(_module, _inputs, output):
            self._captured[index] = output

        return hook

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, image: np.ndarray) -> DetectorResult:
        """One detector pass on an HxWx3 uint8 RGB frame."""
        return self.features_and_detections_batch([image])[0]

    def features_and_detections_batch(self, images: Sequence[np.ndarray]) -> list[DetectorResult]:
        """One forward pass for several frames of the same size (e.g. training crops).

        ``latency_ms`` of each result is the batch's wall time divided by the number of frames.
        """
        if len(images) == 0:
            return []
        if not self._hooks:
            raise RuntimeError("DetectorAdapter was closed (its feature hooks are removed)")
        for i, im in enumerate(images):
            check_image(im, f"image[{i}]")
        if len({im.shape for im in images}) != 1:
            raise ValueError(f"all images in a batch must have the same shape, got {sorted({im.shape for im in images})}")
        stride = max(self.strides)
        with self._lock, torch.inference_mode(), keep_torch_threads():
            self._sync()
            t0 = time.perf_counter()
            boxed = [letterbox(im, self.imgsz, stride=stride, rect=self.rect) for im in images]
            geometry = boxed[0][1]
            x = torch.from_numpy(np.stack([b[0] for b in boxed])).to(self.device)
            x = x.permute(0, 3, 1, 2).to(self._dtype).div_(255.0)  # RGB already: no channel flip
            self._sync()
            t1 = time.perf_counter()
            self._captured.clear()
            preds = self.model(x)
            self._sync()
            t2 = time.perf_counter()
            features = [
                crop_features_to_frame(self._captured[i].float(), geometry, s)
                for i, s in zip(self.feature_layers, self.strides)
            ]
            self._captured.clear()
            detections = self._postprocess(preds, geometry)
            self._sync()
            t3 = time.perf_counter()
        n = len(images)
        timings = {"preprocess": (t1 - t0) * 1e3 / n, "forward": (t2 - t1) * 1e3 / n, "postprocess": (t3 - t2) * 1e3 / n}
        return [
            DetectorResult(
                features=[f[k : k + 1] for f in features],
                detections=detections[k],
                latency_ms=(t3 - t0) * 1e3 / n,
                geometry=geometry,
                strides=self.strides,
                timings_ms=dict(timings),
            )
            for k in range(n)
        ]

    def _postprocess(self, preds, geometry: LetterboxGeometry) -> list[Detections]:
        from ultralytics.utils.nms import non_max_suppression

        out = non_max_suppression(
            preds,
            self.conf,
            self.iou,
            max_det=self.max_det,
            nc=0 if self._task == "detect" else len(self.names),
            end2end=bool(getattr(self.model, "end2end", False)),
        )
        result = []
        for p in out:
            p = p[:, :6].float()
            boxes = geometry.input_to_frame(p[:, :4])  # exact inverse letterbox, clipped to the frame
            result.append(
                Detections(
                    boxes.cpu().numpy(), p[:, 5].long().cpu().numpy(), p[:, 4].cpu().numpy(), self.names
                )
            )
        return result

    def close(self) -> None:
        """Remove the forward hooks (the model can then be used without them)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __repr__(self) -> str:
        return (
            f"DetectorAdapter({self.detector_id}, device={self.device}, imgsz={self.imgsz}, "
            f"layers={self.feature_layers}, strides={self.strides}, channels={self.feature_channels})"
        )
