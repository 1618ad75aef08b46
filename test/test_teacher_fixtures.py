"""The teacher reproduces the official MASt3R / DUSt3R test vectors."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from conftest import fixture_config
from lunar_recon.models import DUST3R_RELEASED, MAST3R_RELEASED, build_model, load_model, parse_constructor_string
from lunar_recon.models.blocks import RoPE2D, token_positions
from lunar_recon.models.heads import reg_dense_conf, reg_dense_depth, reg_desc

OUTPUT_ATOL = 1e-5
TOKEN_ATOL = 3e-5
FIXTURES = ["mast3r_tiny", "dust3r_tiny"]


def _views(inputs):
    return (
        {"img": inputs["img1"], "true_shape": inputs["true_shape1"]},
        {"img": inputs["img2"], "true_shape": inputs["true_shape2"]},
    )


def _run(model, fixture_path):
    inputs = torch.load(fixture_path / "inputs.pt", weights_only=True)
    with torch.inference_mode():
        return model(*_views(inputs), return_tokens=True)


def _compare(result, expected):
    res1, res2, tokens = result
    checked = 0
    for name, want in expected.items():
        if name.startswith("inter."):
            got = tokens[name[len("inter.") :]]
            if got.dtype == torch.int64:
                assert torch.equal(got, want), name
            else:
                err = (got - want).abs().max().item()
                assert err <= TOKEN_ATOL, f"{name}: max |diff| {err:.2e} > {TOKEN_ATOL}"
        else:
            view, key = name.split(".", 1)
            got = (res1 if view == "view1" else res2)[key]
            assert got.shape == want.shape, name
            err = (got - want).abs().max().item()
            assert err <= OUTPUT_ATOL, f"{name}: max |diff| {err:.2e} > {OUTPUT_ATOL}"
        checked += 1
    return checked


@pytest.mark.parametrize("name", FIXTURES)
def test_official_checkpoint_reproduces_outputs_and_tokens(fixtures_dir, name):
    fx = fixtures_dir / name
    model = load_model(fx / "checkpoint.pth")  # config parsed from args.model, widths from shapes
    assert not model.training
    expected = torch.load(fx / "outputs.pt", weights_only=True)
    assert _compare(_run(model, fx), expected) == len(expected)
    meta = json.loads((fx / "config.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == meta["derived"]["num_parameters"]


@pytest.mark.parametrize("name", FIXTURES)
def test_plain_state_dict_with_config_reproduces(fixtures_dir, name):
    fx = fixtures_dir / name
    model = load_model(fx / "state_dict.pt", config=fixture_config(fx))
    expected = torch.load(fx / "outputs.pt", weights_only=True)
    assert _compare(_run(model, fx), expected) == len(expected)


def test_mast3r_descriptors_are_unit_norm(fixtures_dir):
    res1, res2, _ = _run(load_model(fixtures_dir / "mast3r_tiny" / "checkpoint.pth"), fixtures_dir / "mast3r_tiny")
    for res in (res1, res2):
        assert torch.allclose(res["desc"].norm(dim=-1), torch.ones(1), atol=1e-5)
        assert (res["conf"] > 1).all() and (res["desc_conf"] > 0).all()
    assert list(res2)[-1] == "pts3d_in_other_view"


def test_tokens_do_not_change_outputs(fixtures_dir):
    fx = fixtures_dir / "mast3r_tiny"
    model = load_model(fx / "checkpoint.pth")
    inputs = torch.load(fx / "inputs.pt", weights_only=True)
    plain1, plain2 = model(*_views(inputs))
    with_tokens1, with_tokens2, tokens = model(*_views(inputs), return_tokens=True)
    for a, b in ((plain1, with_tokens1), (plain2, with_tokens2)):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert {"view1.enc_out", "view2.dec_block.05", "view1.dec_out"} <= set(tokens)


def test_batch_of_pairs_equals_single_pairs(fixtures_dir):
    fx = fixtures_dir / "dust3r_tiny"
    model = load_model(fx / "checkpoint.pth")
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(2, 3, 32, 48, generator=g) * 2 - 1 for _ in range(2))
    with torch.inference_mode():
        batched = model({"img": a}, {"img": b})
        single = model({"img": a[1:]}, {"img": b[1:]})
    for k in single[1]:
        assert (batched[1][k][1:] - single[1][k]).abs().max() < 1e-5, k


def test_true_shape_must_match_image(fixtures_dir):
    model = load_model(fixtures_dir / "dust3r_tiny" / "checkpoint.pth")
    img = torch.zeros(1, 3, 32, 48)
    with pytest.raises(ValueError, match="true_shape"):
        model({"img": img, "true_shape": torch.tensor([[48, 32]])}, {"img": img})


# ---- unit vectors ----------------------------------------------------------------------------
def test_rope_position_getter_and_postprocess_unit_vectors(fixtures_dir):
    u = torch.load(fixtures_dir / "units.pt", weights_only=True)
    rope = RoPE2D(100.0)
    assert (rope(u["rope.tokens"], u["rope.positions_yx"]) - u["rope.out"]).abs().max() < 1e-6
    pos8 = u["rope.positions_yx"][:1]
    assert (rope(u["rope.head_dim8.tokens"], pos8) - u["rope.head_dim8.out"]).abs().max() < 1e-6
    assert torch.equal(token_positions(1, 3, 5), u["position_getter.h3_w5"])
    inf = float("inf")
    depth = reg_dense_depth(u["reg_dense_depth.in"], ("exp", -inf, inf))
    assert torch.allclose(depth, u["reg_dense_depth.exp.out"], atol=1e-6)
    assert torch.equal(depth[0, 0, 0], torch.zeros(3))  # the exact zero vector stays finite
    assert torch.allclose(reg_dense_conf(u["reg_dense_conf.in"], ("exp", 1, inf)), u["reg_dense_conf.exp_1_inf.out"])
    assert torch.allclose(reg_dense_conf(u["reg_dense_conf.in"], ("exp", 0, inf)), u["reg_dense_conf.exp_0_inf.out"])
    assert torch.allclose(reg_desc(u["reg_desc.in"], "norm"), u["reg_desc.norm.out"], atol=1e-6)


def test_rope_base_matters(fixtures_dir):
    u = torch.load(fixtures_dir / "units.pt", weights_only=True)
    wrong = RoPE2D(10000.0)(u["rope.tokens"], u["rope.positions_yx"])
    assert (wrong - u["rope.out"]).abs().max() > 1e-3  # the check above could fail


# ---- the released configurations -------------------------------------------------------------
@pytest.fixture(scope="module")
def real_shapes(fixtures_dir):
    return json.loads(gzip.open(fixtures_dir / "real_config_state_dict_shapes.json.gz").read())


@pytest.mark.parametrize("key,cfg,count", [("mast3r", MAST3R_RELEASED, 688_638_856), ("dust3r", DUST3R_RELEASED, 571_171_208)])
def test_released_configs_on_meta_device(real_shapes, key, cfg, count):
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == count
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == real_shapes[key]["state_dict"]


def test_released_constructor_string_parses_to_released_config(real_shapes):
    parsed = parse_constructor_string(real_shapes["mast3r"]["constructor"])
    assert parsed == MAST3R_RELEASED.replace(name="")
    # The released file's own string (ManyAR_PatchEmbed, no landscape_only) parses the same.
    train_style = (
        real_shapes["mast3r"]["constructor"]
        .replace("PatchEmbedDust3R", "ManyAR_PatchEmbed")
        .replace(", landscape_only=False", "")
    )
    assert parse_constructor_string(train_style) == parsed
    with torch.device("meta"):
        assert (
            sum(p.numel() for p in build_model(parsed.replace(two_confs=False)).parameters())
            == real_shapes["mast3r_two_confs_false_num_parameters"]
        )


@pytest.mark.parametrize("name", FIXTURES)
def test_inference_path_reproduces_outputs(fixtures_dir, name):
    """The plain inference call (both decoder stacks batched per layer, channels-last heads,
    cached RoPE tables) gives the official outputs too, and skipping view 2's head leaves
    view 1 untouched."""
    fx = fixtures_dir / name
    model = load_model(fx / "checkpoint.pth")
    inputs = torch.load(fx / "inputs.pt", weights_only=True)
    expected = torch.load(fx / "outputs.pt", weights_only=True)
    with torch.inference_mode():
        res1, res2 = model(*_views(inputs))
        only1, none2 = model(*_views(inputs), view2_head=False)
    checked = 0
    for key, want in expected.items():
        if key.startswith("inter."):
            continue
        view, out = key.split(".", 1)
        got = (res1 if view == "view1" else res2)[out]
        assert (got - want).abs().max().item() <= OUTPUT_ATOL, key
        if view == "view1":
            assert torch.equal(only1[out], got), key
        checked += 1
    assert checked >= 4 and none2 == {}


def test_rope_tables_stay_one_per_head_size_over_many_image_shapes():
    """A burst of odd image shapes must not grow the rotary tables (RSS grew per new shape):
    one table per head size, and the rotation equals a fresh module's bit for bit."""
    import torch

    rope = RoPE2D(100.0)
    for h, w in [(3, 5), (17, 4), (9, 33), (40, 2), (7, 7), (65, 3)]:
        pos = token_positions(1, h, w, torch.device("cpu"))
        x = torch.randn(1, 2, h * w, 16)
        assert torch.equal(rope(x, pos), RoPE2D(100.0)(x, pos))
    assert len(rope._cache) == 1 and rope._cache[(8, torch.device("cpu"), torch.float32)][0].shape[0] == 128
