"""Size and cost of a model: unique parameters and FLOPs per stereo pair.

FLOPs are counted on the meta device (no weights allocated, nothing computed), so the
688.6M-parameter teacher is measured in well under a second.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .stereo3d import build_model


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (aliased tensors counted once, as the papers count them)."""
    return sum(p.numel() for p in model.parameters())


def pair_gflops(model_or_config, height: int, width: int, view2_head: bool = True) -> float:
    """GFLOPs (multiply-add = 2 FLOPs) of one forward on a ``height x width`` pair (without
    view 2's head when ``view2_head`` is False, as the node runs it)."""
    cfg = getattr(model_or_config, "config", model_or_config)
    with torch.device("meta"):
        meta = build_model(cfg).eval()
        img = torch.empty(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta({"img": img}, {"img": img}, view2_head=view2_head)
    return counter.get_total_flops() / 1e9


def gflops_by_part(model_or_config, height: int, width: int) -> dict[str, float]:
    """GFLOPs split into encoder, decoder and heads (where the speed is won)."""
    cfg = getattr(model_or_config, "config", model_or_config)
    with torch.device("meta"):
        meta = build_model(cfg).eval()
        img = torch.empty(1, 3, height, width)
    counter = FlopCounterMode(display=False, depth=3)
    with counter, torch.no_grad():
        meta({"img": img}, {"img": img})
    per_module = counter.get_flop_counts()
    parts = {"encoder": 0.0, "decoder": 0.0, "heads": 0.0}
    for name, counts in per_module.items():
        names = name.split(".")
        # Count each called module once: the model's direct children ('<Class>.<child>'),
        # and the blocks of ModuleLists, which are never called as a whole.
        wanted = 3 if len(names) > 1 and names[1] in ("enc_blocks", "dec_blocks", "dec_blocks2") else 2
        if len(names) != wanted:
            continue
        total = sum(counts.values()) / 1e9
        top = names[1]
        if top in ("patch_embed", "cnn_encoder", "enc_blocks", "enc_norm"):
            parts["encoder"] += total
        elif top in ("decoder_embed", "dec_blocks", "dec_blocks2", "dec_norm"):
            parts["decoder"] += total
        elif top.startswith("downstream_head"):
            parts["heads"] += total
    return parts


def latency_ms(model, height: int, width: int, threads: int = 2, repeats: int = 10, warmup: int = 1) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` single-pair forwards on the CPU with ``threads``
    threads (after ``warmup`` untimed ones), sorted.  The caller's thread count is restored."""
    import time

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    img1 = torch.rand(1, 3, height, width) * 2 - 1
    img2 = torch.rand(1, 3, height, width) * 2 - 1
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model({"img": img1}, {"img": img2})
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model({"img": img1}, {"img": img2})
                times.append(1e3 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(before)
    return sorted(times)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100 * (len(sorted_values) - 1)))))
    return float(sorted_values[k])
