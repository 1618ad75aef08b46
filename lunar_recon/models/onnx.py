"""An exported network (ONNX, ``lunar-recon export``) behind the pipeline's ``predict``
contract, on ONNX Runtime (CPU or CUDA): loaded by the registry for a ``.onnx`` model name."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .predict import PairPrediction
from .preprocess import to_pil_rgb


class OnnxStereoModel:
    """An exported model behind the pipeline's ``predict`` contract (ONNX Runtime, CPU or CUDA)."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=ort.get_available_providers())
        shape = self.session.get_inputs()[0].shape
        self.hw = (int(shape[2]), int(shape[3]))

    def _prep(self, image: np.ndarray) -> np.ndarray:
        rgb = np.asarray(to_pil_rgb(image).resize((self.hw[1], self.hw[0])), np.float32) / 255.0
        return ((rgb - 0.5) / 0.5).transpose(2, 0, 1)[None]

    def predict(
        self, image_left: np.ndarray, image_right: np.ndarray, size: int = 512, right_view: bool = True
    ) -> PairPrediction:
        p1, c1, p2, c2 = self.session.run(None, {"img1": self._prep(image_left), "img2": self._prep(image_right)})
        h, w = np.asarray(image_left).shape[:2]
        h2, w2 = np.asarray(image_right).shape[:2]
        up = lambda a, hh, ww: cv2.resize(a[0], (ww, hh), interpolation=cv2.INTER_LINEAR)  # noqa: E731
        if not right_view:  # the graph computes both views; only the resampling is saved
            return PairPrediction(up(p1, h, w), None, up(c1, h, w), None, network_hw=self.hw)
        return PairPrediction(up(p1, h, w), up(p2, h2, w2), up(c1, h, w), up(c2, h2, w2), network_hw=self.hw)
