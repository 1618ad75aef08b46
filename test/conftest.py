"""Shared test helpers: where the reference fixtures live, and small builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's shared/ folder: $LUNAR_RECON_SHARED, else ../shared beside the checkout."""
    env = os.environ.get("LUNAR_RECON_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared", REPO / "shared"]:
        if (cand / "fixtures").is_dir():
            return cand
    pytest.skip("reference fixtures not found (set LUNAR_RECON_SHARED to the folder holding fixtures/)")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return shared_dir() / "fixtures"


@pytest.fixture(scope="session")
def stereolunar_dir() -> Path:
    return shared_dir() / "data" / "stereolunar_sample"


def card_student_row(metrics: dict, model_file: Path) -> dict:
    """The shipped student's row of a card's held-out metrics, whichever label the run gave it
    (its path, or "default (file)"); not a per-sequence row."""
    rows = [row for name, row in metrics.items() if model_file.name in name and " | " not in name and "+" not in name]
    assert len(rows) == 1, sorted(metrics)
    return rows[0]


def fixture_config(fixture: Path):
    """ModelConfig of a tiny fixture model from its config.json (constructor string + widths)."""
    from lunar_recon.models import parse_constructor_string

    meta = json.loads((fixture / "config.json").read_text())
    widths = meta["head_width_overrides"]
    changes = dict(
        dpt_feature_dim=widths["feature_dim"], dpt_last_dim=widths["last_dim"], dpt_layer_dims=tuple(widths["layer_dims"])
    )
    if "local_feature_mlp_hidden" in meta["derived"]:
        changes["local_feat_hidden_dim"] = meta["derived"]["local_feature_mlp_hidden"]
    return parse_constructor_string(meta["constructor_string"]).replace(**changes)


@pytest.fixture(autouse=True, scope="session")
def _deterministic_threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """``python -m lunar_recon ARGS...`` as a user runs it, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "lunar_recon", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )
