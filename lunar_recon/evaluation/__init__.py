"""Evaluation against ground truth (ROS-free): scoring, the report (its figures drawn by ``viz``), and the
runner ``lunar-recon evaluate-bag`` drives (one reconstructor per model and sequence, as the
node runs one per camera stream)."""

from ..geometry.hazard import hazard_map_from_grid
from ..viz import example_figure
from .report import MAIN_COLUMNS, error_by_range_figure, headline, markdown_table, reliability_figure, write_report
from .scoring import (
    RANGE_BINS_M,
    FrameScore,
    disparity_error_samples,
    frame_score,
    hazard_on_truth_cells,
    ideal_stereo_depth,
    pooled_hazard_f1,
    pooled_reliability,
    pooled_safety,
    range_bin,
    score_frame,
    summarize,
)

__all__ = [
    "MAIN_COLUMNS",
    "RANGE_BINS_M",
    "FrameScore",
    "disparity_error_samples",
    "error_by_range_figure",
    "example_figure",
    "frame_score",
    "hazard_map_from_grid",
    "hazard_on_truth_cells",
    "headline",
    "ideal_stereo_depth",
    "markdown_table",
    "pooled_hazard_f1",
    "pooled_reliability",
    "pooled_safety",
    "range_bin",
    "reliability_figure",
    "score_frame",
    "summarize",
    "write_report",
]
