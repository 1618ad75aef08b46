"""The default student shipped inside the package."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from lunar_recon.models import load_model
from lunar_recon.models.profile import count_parameters
from lunar_recon.models.registry import DEFAULT_STUDENT, SHIPPED_DIR, load_stereo_model, shipped_model_path


def test_shipped_student_loads_and_its_card_matches_its_file():
    path = shipped_model_path()
    assert path is not None and path.name == DEFAULT_STUDENT
    card = json.loads((SHIPPED_DIR / "model_card.json").read_text())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model = load_model(path)
    assert model.config.to_dict() == card["config"]
    assert count_parameters(model) == card["parameters"] <= 688_638_856 / 50
    assert model.meta["card"]["inference_size"] == card["inference_size"]
    assert (SHIPPED_DIR / "MODEL_CARD.md").read_text().startswith("# lunar_recon default student")
    # 'default' resolves to it, and it runs on a pair of any size
    default = load_stereo_model("default")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160), dtype=np.uint8)
    pred = default.predict(img, img, size=card["inference_size"])
    assert pred.points_left.shape == (120, 160, 3) and np.isfinite(pred.points_left).mean() > 0.9
