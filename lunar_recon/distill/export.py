"""Export to TorchScript and ONNX, and parity checks (the ONNX Runtime backend: ``models.onnx``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.checkpoint import load_model

OUTPUT_NAMES = ["pts3d", "conf", "pts3d_in_other_view", "conf_other"]


class ExportWrapper(torch.nn.Module):
    """Tensor-in, tensor-out view of a model: (img1, img2) -> (pts1, conf1, pts2, conf2)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, img1: torch.Tensor, img2: torch.Tensor):
        r1, r2 = self.model({"img": img1}, {"img": img2})
        return r1["pts3d"], r1["conf"], r2["pts3d_in_other_view"], r2["conf"]


def export_model(model_path: str, out: str | Path, height: int = 192, width: int = 256, opset: int = 17) -> dict:
    if height % 16 or width % 16:
        raise ValueError("export size must be a multiple of 16")
    if opset < 17:
        raise ValueError("ONNX opset must be >= 17")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_path).eval()
    wrapper = ExportWrapper(model).eval()
    g = torch.Generator().manual_seed(0)
    img1 = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    img2 = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(img1, img2)]
        traced = torch.jit.trace(wrapper, (img1, img2), check_trace=False)
    ts_path = out / "model.torchscript.pt"
    traced.save(str(ts_path))
    loaded = torch.jit.load(str(ts_path))
    with torch.no_grad():
        ts_out = [t.numpy() for t in loaded(img1, img2)]
    onnx_path = out / "model.onnx"
    torch.onnx.export(
        wrapper,
        (img1, img2),
        str(onnx_path),
        input_names=["img1", "img2"],
        output_names=OUTPUT_NAMES,
        opset_version=opset,
        dynamo=False,
    )
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"img1": img1.numpy(), "img2": img2.numpy()})
    report = {
        "torchscript": str(ts_path),
        "onnx": str(onnx_path),
        "opset": opset,
        "size": [height, width],
        "torchscript_max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(ref, ts_out)),
        "onnx_max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(ref, onnx_out)),
    }
    (out / "export.json").write_text(json.dumps(report, indent=1))
    return report
