"""Checkpoint loading: every file kind, and a clear error for every bad one."""

from __future__ import annotations

import argparse

import pytest
import torch

from conftest import fixture_config
from lunar_recon.models import CheckpointError, ConfigError, ModelConfig, load_model, parse_constructor_string, save_checkpoint
from lunar_recon.models.config import to_constructor_string


class Payload:
    """Stands in for an object whose unpickling would run code."""


@pytest.fixture()
def tiny(fixtures_dir):
    return fixtures_dir / "mast3r_tiny"


def _outputs(model, fx):
    inputs = torch.load(fx / "inputs.pt", weights_only=True)
    with torch.inference_mode():
        return model({"img": inputs["img1"]}, {"img": inputs["img2"]})


def test_own_checkpoint_round_trip(tmp_path, tiny):
    model = load_model(tiny / "checkpoint.pth")
    path = save_checkpoint(model, tmp_path / "m.pt", note="round trip")
    again = load_model(path)  # config comes from inside the file
    assert again.config == model.config
    a, b = _outputs(model, tiny), _outputs(again, tiny)
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == {"note": "round trip"}


def test_config_yaml_round_trip_keeps_infinities():
    cfg = ModelConfig(dec_depth=6, dpt_layer_dims=(8, 8, 16, 16), name="x")
    back = ModelConfig.from_yaml(cfg.to_yaml())
    assert back == cfg and back.depth_mode[2] == float("inf")
    with pytest.raises(ConfigError, match="unknown model config fields"):
        ModelConfig.from_dict({"bogus": 1})


def test_constructor_string_round_trip(fixtures_dir):
    cfg = fixture_config(fixtures_dir / "mast3r_tiny")
    widths = dict(
        dpt_feature_dim=cfg.dpt_feature_dim,
        dpt_last_dim=cfg.dpt_last_dim,
        dpt_layer_dims=cfg.dpt_layer_dims,
        local_feat_hidden_dim=cfg.local_feat_hidden_dim,
    )
    assert parse_constructor_string(to_constructor_string(cfg)).replace(**widths) == cfg


@pytest.mark.parametrize(
    "text,match",
    [
        ("__import__('os').system('true')", "not a call|unknown model class"),
        ("AsymmetricMASt3R(enc_depth=__import__('os'))", "unsupported expression"),
        ("AsymmetricMASt3R(enc_depth=os)", "only literals"),
        ("AsymmetricMASt3R(pos_embed='cosine')", "RoPE"),
        ("Evil(enc_depth=2)", "unknown model class"),
        ("AsymmetricMASt3R(enc_depth=2, bogus=1)", "unsupported constructor arguments"),
        ("AsymmetricMASt3R(", "cannot parse"),
    ],
)
def test_constructor_string_is_parsed_never_evaluated(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_constructor_string(text)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_model(tmp_path / "absent.pth")


def test_truncated_file_names_the_file(tmp_path, tiny):
    data = (tiny / "checkpoint.pth").read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_model(bad)


def test_non_checkpoint_file(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("this is not a model")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(bad)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    # Any class a file names (here one of this module) would run code when unpickled.
    torch.save({"model": {}, "args": Payload()}, evil)
    with pytest.raises(CheckpointError, match="not loaded, for safety") as err:
        load_model(evil)
    assert "Payload" in str(err.value) and "weights_only" not in str(err.value)


class _SystemCall:
    def __reduce__(self):
        import os

        return (os.system, ("echo must-not-run",))


@pytest.mark.parametrize("payload,global_name", [(_SystemCall(), "system"), ({"a": _SystemCall()}, "system")])
def test_pickled_call_names_the_global_and_never_suggests_the_unsafe_flag(tmp_path, payload, global_name):
    evil = tmp_path / "evil.pth"
    torch.save(payload, evil)
    with pytest.raises(CheckpointError) as err:
        load_model(evil)
    text = str(err.value)
    assert "not loaded, for safety" in text and global_name in text
    assert "corrupt" not in text and "weights_only" not in text and "False" not in text


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, tiny):
    sd = torch.load(tiny / "state_dict.pt", weights_only=True)
    cfg = fixture_config(tiny)
    missing = dict(sd)
    del missing["enc_norm.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): enc_norm.weight"):
        load_model(tmp_path / "missing.pt", config=cfg)
    extra = dict(sd, **{"extra.tensor": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra.tensor"):
        load_model(tmp_path / "extra.pt", config=cfg)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*enc_blocks.0.attn.qkv.weight"):
        load_model(tiny / "state_dict.pt", config=cfg.replace(enc_embed_dim=48, enc_num_heads=4))


def test_known_aliases_and_unused_tensors_may_be_absent(tmp_path, tiny):
    sd = torch.load(tiny / "state_dict.pt", weights_only=True)
    lean = {k: v for k, v in sd.items() if ".layer_rn." not in k and k != "mask_token" and "refinenet4.resConfUnit1" not in k}
    assert len(lean) < len(sd)
    torch.save({"model": lean, "args": argparse.Namespace(model=_args_model(tiny))}, tmp_path / "lean.pth")
    a, b = _outputs(load_model(tmp_path / "lean.pth"), tiny), _outputs(load_model(tiny / "checkpoint.pth"), tiny)
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def test_plain_state_dict_needs_a_config(tiny):
    with pytest.raises(CheckpointError, match="pass config="):
        load_model(tiny / "state_dict.pt")


def test_ddp_prefix_and_croco_single_decoder(tmp_path, fixtures_dir):
    fx = fixtures_dir / "dust3r_tiny"
    sd = torch.load(fx / "state_dict.pt", weights_only=True)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pt")
    assert isinstance(load_model(tmp_path / "ddp.pt", config=fixture_config(fx)), torch.nn.Module)
    # CroCo pre-training files hold one decoder; it initialises both stacks.
    single = {k: v for k, v in sd.items() if not k.startswith("dec_blocks2.")}
    torch.save(single, tmp_path / "croco.pt")
    model = load_model(tmp_path / "croco.pt", config=fixture_config(fx))
    assert torch.equal(model.dec_blocks2[0].attn.qkv.weight, sd["dec_blocks.0.attn.qkv.weight"])


def _args_model(fx) -> str:
    import json

    return json.loads((fx / "config.json").read_text())["checkpoint_args_model_string"]


def test_model_card_test_tables_show_the_cards_held_out_metrics(tmp_path):
    """MODEL_CARD.md's three held-out tables are model_card.json's test metrics as
    scripts/card_test_metrics.py renders them; its section replacement keeps the rest."""
    import importlib.util
    import json

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("card_test_metrics", REPO / "scripts" / "card_test_metrics.py")
    assert spec is not None and spec.loader is not None
    cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cards)
    shipped = REPO / "lunar_recon" / "models" / "shipped"
    card = json.loads((shipped / "model_card.json").read_text())
    md = (shipped / "MODEL_CARD.md").read_text()
    for heading, key in (
        (cards.LANDER_SECTION, "test_metrics"),
        (cards.DESCENT_SECTION, "descent_test_metrics"),
        (cards.APPROACH_SECTION, "approach_test_metrics"),
    ):
        section = md.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "\n".join(cards.metrics_table(card[key])) in section, heading
    first = card["test_metrics"][next(iter(card["test_metrics"]))]
    assert f"{first['hazard_f1_pooled']:.4g}" in md
    doc = "# card\n\n" + cards.LANDER_SECTION + "\n\nold\n\n## Next\n\nkept\n"
    out = cards.replace_section(doc, cards.LANDER_SECTION, ["new"])
    assert "old" not in out and "new" in out and out.endswith("## Next\n\nkept\n")
    with pytest.raises(ValueError, match="no section"):
        cards.replace_section("# card\n", cards.LANDER_SECTION, ["new"])


def test_a_shipped_head_is_shared_with_the_orbital_network(tmp_path, monkeypatch):
    """scripts/ship_stereo_head.py gives the range-selected orbital network the new head and the
    default's noise model, keeps its own network, and writes its card section again."""
    import hashlib
    import shutil

    from conftest import REPO
    from lunar_recon.models.checkpoint import read_checkpoint
    from lunar_recon.models.registry import ORBITAL_STUDENT

    shipped = REPO / "lunar_recon" / "models" / "shipped"
    for name in ("lunar_student_default.pt", ORBITAL_STUDENT):
        shutil.copy(shipped / name, tmp_path / name)
    (tmp_path / "MODEL_CARD.md").write_text("# card\n\n## Calibrated-stereo head\n\nkept\n")
    default = read_checkpoint(tmp_path / "lunar_student_default.pt")
    default["meta"]["card"]["disparity_sigma_px"] = 0.123
    torch.save(default, tmp_path / "lunar_student_default.pt")
    head = dict(default["stereo_head"])
    head["model"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in head["model"].items()}
    torch.save(head, tmp_path / "stereo_head.pt")

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_orbital
    import ship_stereo_head

    monkeypatch.setattr(ship_stereo_head, "SHIPPED_DIR", tmp_path)
    monkeypatch.setattr(ship_stereo_head, "shipped_model_path", lambda: tmp_path / "lunar_student_default.pt")
    monkeypatch.setattr(ship_orbital, "SHIPPED_DIR", tmp_path)
    before = read_checkpoint(tmp_path / ORBITAL_STUDENT)
    out = ship_stereo_head.share_with_orbital(tmp_path / "stereo_head.pt")
    assert out == tmp_path / ORBITAL_STUDENT
    after = read_checkpoint(out)
    assert all(torch.equal(after["stereo_head"]["model"][k], head["model"][k]) for k in head["model"])
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])  # its own network
    assert after["meta"]["card"]["disparity_sigma_px"] == 0.123
    assert "stereo_head.pt (scripts/ship_stereo_head.py)" in after["meta"]["card"]["commands"][-1]
    md = (tmp_path / "MODEL_CARD.md").read_text()
    assert "kept" in md and "## Orbital network (range-selected)" in md
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] in md
