"""Distillation: SVD initialisation, losses, cache, trainer (resume, DDP), export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from lunar_recon.distill.losses import FeatureAlignment, confidence_regression, distill3r_loss, normal_loss, surface_normals
from lunar_recon.distill.svd_init import layer_map, svd_initialise, truncated_svd
from lunar_recon.models import ModelConfig, build_model, load_model, save_checkpoint

TEACHER = ModelConfig(
    arch="dust3r",
    head_type="dpt",
    output_mode="pts3d",
    two_confs=False,
    desc_conf_mode=None,
    enc_embed_dim=64,
    enc_depth=2,
    enc_num_heads=1,
    dec_embed_dim=64,
    dec_depth=4,
    dec_num_heads=1,
    dpt_feature_dim=16,
    dpt_last_dim=8,
    dpt_layer_dims=(8, 8, 16, 16),
    name="test-teacher",
)
STUDENT = {
    "arch": "dust3r",
    "head_type": "dpt",
    "output_mode": "pts3d",
    "two_confs": False,
    "desc_conf_mode": None,
    "enc_embed_dim": 32,
    "enc_depth": 1,
    "enc_num_heads": 1,
    "dec_embed_dim": 32,
    "dec_depth": 2,
    "dec_num_heads": 1,
    "dpt_feature_dim": 8,
    "dpt_last_dim": 4,
    "dpt_layer_dims": [4, 4, 8, 8],
}


def test_truncated_svd_error_is_the_discarded_spectrum():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(40, 25, generator=g, dtype=torch.float64)
    S = torch.linalg.svdvals(W)
    for r in (1, 5, 24):
        err = ((W - truncated_svd(W, r)) ** 2).sum()
        assert torch.allclose(err, (S[r:] ** 2).sum(), rtol=1e-9)


@pytest.mark.parametrize("name", ["mast3r_tiny", "dust3r_tiny"])
def test_student_at_teacher_width_reproduces_the_teacher_exactly(fixtures_dir, name):
    teacher = load_model(fixtures_dir / name / "checkpoint.pth")
    student = svd_initialise(teacher, teacher.config, "shared").eval()
    inputs = torch.load(fixtures_dir / name / "inputs.pt", weights_only=True)
    v1, v2 = {"img": inputs["img1"]}, {"img": inputs["img2"]}
    with torch.no_grad():
        a, b = teacher(v1, v2), student(v1, v2)
    for i in range(2):
        for k in a[i]:
            assert torch.equal(a[i][k], b[i][k]), k


def test_shared_basis_keeps_attention_heads_paired(fixtures_dir):
    """A student with half the heads: its Q, K and V rows come from the same teacher head."""
    teacher = load_model(fixtures_dir / "mast3r_tiny" / "checkpoint.pth")
    cfg = teacher.config.replace(dec_num_heads=1, dec_embed_dim=8, dpt_hooks=None)
    student = svd_initialise(teacher, cfg, "shared")
    t_qkv = teacher.dec_blocks[0].attn.qkv.weight.detach()
    s_qkv = student.dec_blocks[0].attn.qkv.weight.detach()
    D = 16
    # find the teacher head whose q rows match the student's q rows (after the input basis)
    matches = []
    for h in range(2):
        rows = t_qkv[h * 8 : (h + 1) * 8]
        q_match = any(torch.allclose(rows[:, j], s_qkv[:8, i]) for i in range(8) for j in range(D))
        matches.append(q_match)
    head = matches.index(True)
    for block in range(3):  # q, k and v all come from that head
        t_rows = t_qkv[block * D + head * 8 : block * D + (head + 1) * 8]
        s_rows = s_qkv[block * 8 : (block + 1) * 8]
        assert all(any(torch.allclose(s_rows[:, i], t_rows[:, j]) for j in range(D)) for i in range(8))


@pytest.mark.parametrize("kind", ["mobilenet", "resnet"])
def test_cnn_encoder_students_keep_the_output_contract_and_take_the_decoder_from_the_teacher(kind):
    torch.manual_seed(0)
    teacher = build_model(TEACHER).eval()
    cfg = ModelConfig(**{**STUDENT, "encoder_type": kind, "enc_embed_dim": 32, "enc_depth": 1})
    student = svd_initialise(teacher, cfg, "shared").eval()
    assert not hasattr(student, "patch_embed") and len(student.enc_blocks) == 0
    # the decoder still comes from the teacher (selection basis: student rows are teacher rows)
    t_fc1 = teacher.dec_blocks[0].mlp.fc1.bias.detach()
    assert all(torch.isclose(b, t_fc1).any() for b in student.dec_blocks[0].mlp.fc1.bias.detach())
    img1, img2 = torch.rand(2, 3, 48, 64) * 2 - 1, torch.rand(2, 3, 48, 64) * 2 - 1
    with torch.no_grad():
        r1, r2, tok = student({"img": img1}, {"img": img2}, return_tokens=True)
        t1, t2 = teacher({"img": img1}, {"img": img2})
    for ours, theirs in ((r1, t1), (r2, t2)):
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert ours[k].shape == theirs[k].shape, k
    assert tok["view1.enc_out"].shape == (2, 12, 32) and torch.equal(tok["view1.pos"], tok["view2.pos"])
    assert (r1["conf"] >= 1).all()
    with pytest.raises(Exception, match="multiple of 16"):
        student({"img": torch.zeros(1, 3, 40, 64)}, {"img": torch.zeros(1, 3, 40, 64)})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    from lunar_recon.models.profile import gflops_by_part

    assert gflops_by_part(cfg, 48, 64)["encoder"] > 0


def test_layer_map():
    assert layer_map(12, 4) == [0, 4, 7, 11] and layer_map(12, 12) == list(range(12)) and layer_map(5, 1) == [4]
    with pytest.raises(ValueError):
        layer_map(2, 3)


def _preds(seed=0, b=1, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.randn(b, h, w, 3, generator=g, dtype=torch.float64) + torch.tensor([0, 0, 5.0], dtype=torch.float64)
    p2 = torch.randn(b, h, w, 3, generator=g, dtype=torch.float64) + torch.tensor([0, 0, 5.0], dtype=torch.float64)
    c1 = 1 + torch.rand(b, h, w, generator=g, dtype=torch.float64) * 4
    c2 = 1 + torch.rand(b, h, w, generator=g, dtype=torch.float64) * 4
    return {"pts3d": p1, "conf": c1}, {"pts3d_in_other_view": p2, "conf": c2}


def test_losses_vanish_when_student_equals_teacher_and_have_the_right_gradients():
    t1, t2 = _preds(0)
    assert abs(float(distill3r_loss(t1, t2, t1, t2))) < 1e-9  # teacher targets are read in float32
    s1, s2 = _preds(1)
    s1["pts3d"].requires_grad_(True)
    # at student = teacher the distillation gradient vanishes
    g1 = {"pts3d": t1["pts3d"].clone().requires_grad_(True), "conf": t1["conf"]}
    distill3r_loss(g1, t2, t1, t2).backward()
    assert g1["pts3d"].grad.abs().max() < 1e-6
    # analytic vs numeric gradients (double precision)
    torch.autograd.gradcheck(
        lambda p: distill3r_loss({"pts3d": p, "conf": s1["conf"]}, s2, t1, t2), (s1["pts3d"],), eps=1e-6, atol=1e-5
    )
    torch.autograd.gradcheck(
        lambda c: confidence_regression({"pts3d": s1["pts3d"].detach(), "conf": c}, s2, t1["pts3d"], t2["pts3d_in_other_view"]),
        (s1["conf"].clone().requires_grad_(True),),
        eps=1e-6,
        atol=1e-5,
    )
    align = FeatureAlignment({"a": "a"}, {"a": 6}, {"a": 6}, "cosine", 0.9).double()
    with torch.no_grad():
        align.proj["a"].weight.copy_(torch.eye(6))
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    assert float(align({"a": x}, {"a": x})) == 0.0
    assert float(align({"a": x}, {"a": -x})) > 1.0


def _terrain_pointmap(tilt_deg: float, scale: float = 1.0, h: int = 24, w: int = 32) -> torch.Tensor:
    """A ground rippled along y seen from above (B=1, H, W, 3), tilted about the x axis by
    ``tilt_deg``: its normals stay perpendicular to the axis, so each turns by exactly the tilt."""
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij"
    )
    z = 10 + 0.1 * torch.sin(3 * y)
    p = torch.stack([x, y, z], -1)
    t = np.radians(tilt_deg)
    R = torch.tensor([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]], dtype=torch.float64)
    return (scale * p @ R.T)[None]


def test_normal_loss_measures_the_tilt_between_surfaces_and_ignores_scale():
    flat = torch.stack(
        torch.meshgrid(torch.arange(8.0), torch.arange(9.0), indexing="ij")[::-1] + (torch.full((8, 9), 5.0),), -1
    )[None]
    flat[..., 2] += 0.5 * flat[..., 0]  # the plane z = 5 + x / 2: normal (-1/2, 0, 1) up to sign
    n, ok = surface_normals(flat, torch.ones(flat.shape[:3], dtype=torch.bool), 2)
    assert ok.all() and torch.allclose(n.abs(), torch.tensor([0.5, 0.0, 1.0]) / np.sqrt(1.25), atol=1e-6)
    target = _terrain_pointmap(0.0)
    # the same normals as the node's slope image (numpy), up to orientation
    from lunar_recon.geometry.slope import normals_from_points

    n_np = normals_from_points(target[0].numpy(), 2)[2:-2, 2:-2]
    n_t = surface_normals(target, None, 2)[0][0].numpy()
    assert np.allclose(np.abs((n_np * n_t).sum(-1)), 1.0, atol=1e-5)
    same = {"pts3d": 3.0 * target}, {"pts3d_in_other_view": target}  # any scale: normals only
    assert float(normal_loss(*same, target, target)) < 1e-5  # float32 inside
    for tilt in (2.0, 10.0):  # |n - n*| = 2 sin(angle / 2): a rigid tilt is read back as its angle
        tilted = _terrain_pointmap(tilt)
        loss = float(normal_loss({"pts3d": tilted}, {"pts3d_in_other_view": tilted}, target, target))
        assert loss == pytest.approx(2 * np.sin(np.radians(tilt) / 2), rel=1e-3)
    # invalid target pixels (NaN) are left out, not propagated
    holed = target.clone()
    holed[0, 5:9, 5:9] = float("nan")
    assert float(normal_loss(*same, holed, holed)) < 1e-5
    from lunar_recon.distill.trainer import DistillConfig

    with pytest.raises(ValueError, match="normal_weight"):
        DistillConfig(loss="gt", init="random", normal_weight=-0.5).validate()
    # the gradient pulls a tilted prediction toward the target
    p = _terrain_pointmap(5.0).requires_grad_(True)
    normal_loss({"pts3d": p}, {"pts3d_in_other_view": p}, target, target).backward()
    with torch.no_grad():
        stepped = p - 0.05 * p.grad / p.grad.abs().max()
    assert float(normal_loss({"pts3d": stepped}, {"pts3d_in_other_view": stepped}, target, target)) < float(
        normal_loss({"pts3d": p}, {"pts3d_in_other_view": p}, target, target)
    )


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    data = root / "data"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "simulate",
            "--preset",
            "descent",
            "--pairs",
            "10",
            "--seed",
            "3",
            "--width",
            "96",
            "--height",
            "96",
            "--altitude",
            "60",
            "--out",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    torch.manual_seed(0)
    save_checkpoint(build_model(TEACHER), root / "teacher.pt")
    return root


def test_cache_round_trip_and_compression(tiny_setup, tmp_path):
    from lunar_recon.distill.cache import TeacherCache, build_cache, rle_decode, rle_encode
    from lunar_recon.distill.data import TrainPairs, collate

    m = np.array([[True, True, False], [False, True, True]])
    assert np.array_equal(rle_decode(rle_encode(m), m.shape), m)
    teacher = load_model(tiny_setup / "teacher.pt")
    pairs = TrainPairs(tiny_setup / "data", "train", 64)
    meta = build_cache(teacher, pairs, tmp_path / "c", ["view1.enc_out"], rank=0, shard_size=3)
    assert meta["compression_ratio"] > 1.5 and len(meta["shards"]) == 3
    cache = TeacherCache(tmp_path / "c")
    item = pairs[4]
    with torch.no_grad():
        r1, r2, tok = teacher({"img": item.img1[None]}, {"img": item.img2[None]}, return_tokens=True)
    e = cache[item.name]
    assert torch.allclose(e["pts1"], r1["pts3d"][0], rtol=2e-3, atol=1e-3)
    assert torch.allclose(e["conf2"], r2["conf"][0], rtol=2e-3)
    assert torch.allclose(e["features"]["view1.enc_out"], tok["view1.enc_out"][0], atol=5e-3)
    # low-rank features at full rank reconstruct the tokens; a checksum mismatch is detected
    meta_lr = build_cache(teacher, pairs, tmp_path / "lr", ["view1.enc_out"], rank=64, shard_size=8)
    assert meta_lr["bytes_per_pair"] < meta["bytes_per_pair"] * 1.5
    shard = tmp_path / "c" / "shard_00000.pt"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        TeacherCache(tmp_path / "c")
    # an interrupted/corrupt cache is repaired by running again: only the bad shard is redone
    build_cache(teacher, pairs, tmp_path / "c", ["view1.enc_out"], rank=0, shard_size=3)
    assert len(TeacherCache(tmp_path / "c")) == len(pairs)
    _ = collate


def test_damaged_caches_fail_naming_the_file_and_the_repair(tiny_setup, tmp_path):
    import os
    import pickle

    from lunar_recon.distill.cache import CacheError, TeacherCache, build_cache
    from lunar_recon.distill.data import TrainPairs

    teacher = load_model(tiny_setup / "teacher.pt")
    pairs = TrainPairs(tiny_setup / "data", "train", 64)
    root = tmp_path / "c"
    build_cache(teacher, pairs, root, [], rank=0, shard_size=4)
    first = pairs[0].name
    # a shard whose pickle would run code: refused, never run, and named (checksums off)
    shard = root / "shard_00000.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"format": "x", "entries": [Payload()]}, shard)
    with pytest.raises(CacheError, match=r"shard_00000\.pt: not loaded, for safety.*re-run lunar-recon cache"):
        TeacherCache(root, verify=False)[first]
    assert not (tmp_path / "pwned").exists()
    shard.write_bytes(b"PK\x03\x04" + b"\x00" * 20)  # truncated
    with pytest.raises(CacheError, match=r"shard_00000\.pt: .*re-run lunar-recon cache"):
        TeacherCache(root, verify=False)[first]
    # a broken index is named, and re-running cache rebuilds it (and leaves no temporaries)
    (root / "cache.json").write_text("{not json")
    (root / ".cache.json.tmp").write_text("left by a killed run")
    with pytest.raises(CacheError, match=r"cache\.json: not a readable cache index.*re-run lunar-recon cache"):
        TeacherCache(root)
    build_cache(teacher, pairs, root, [], rank=0, shard_size=4)
    assert len(TeacherCache(root)) == len(pairs) and not list(root.glob("*.tmp")) and not list(root.glob(".*.tmp"))
    _ = pickle


def test_finished_files_are_flushed_to_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    import os

    from lunar_recon.fileio import write_text_durable
    from lunar_recon.models.checkpoint import atomic_torch_save

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    atomic_torch_save({"w": torch.zeros(3)}, tmp_path / "ckpt.pt")
    assert any(p.endswith(".tmp") for p in synced) and str(tmp_path) in synced  # the data, then the folder
    synced.clear()
    write_text_durable(tmp_path / "index.json", "{}")
    assert any(p.endswith(".index.json.tmp") for p in synced) and synced[-1] == str(tmp_path)
    assert (tmp_path / "index.json").read_text() == "{}" and not list(tmp_path.glob("*.tmp"))


def _config(root, out, **extra):
    cfg = {
        "out": str(out),
        "data": str(root / "data"),
        "teacher": str(root / "teacher.pt"),
        "student": STUDENT,
        "init": "shared",
        "loss": "gt",
        "size": 64,
        "steps": 6,
        "batch_size": 2,
        "val_every": 3,
        "val_pairs": 1,
        "checkpoint_every": 2,
        "warmup_steps": 2,
        "lr": 1e-3,
        "seed": 1,
    }
    cfg.update(extra)
    path = out.parent / f"{out.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_resume_reproduces_the_uninterrupted_losses(tiny_setup, tmp_path):
    from lunar_recon.distill.trainer import DistillConfig, Trainer

    full = Trainer(DistillConfig.from_yaml(_config(tiny_setup, tmp_path / "full"))).train()
    part = Trainer(DistillConfig.from_yaml(_config(tiny_setup, tmp_path / "part")))
    part.train(stop_after=4)  # 'killed' after a checkpoint at step 4
    resumed = Trainer(DistillConfig.from_yaml(_config(tiny_setup, tmp_path / "part")), resume=True)
    assert resumed.step == 4
    hist = resumed.train()
    assert [round(r["loss"], 6) for r in hist] == [round(r["loss"], 6) for r in full]
    assert (tmp_path / "part" / "best.pt").exists() and (tmp_path / "part" / "final.pt").exists()
    assert load_model(tmp_path / "part" / "final.pt").config.enc_embed_dim == 32


def test_distill_command_with_cache_and_features_reduces_validation_error(tiny_setup, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "cache",
            "--teacher",
            str(tiny_setup / "teacher.pt"),
            "--data",
            str(tiny_setup / "data"),
            "--out",
            str(tmp_path / "cache"),
            "--size",
            "64",
            "--features",
            "view1.enc_out",
            "--rank",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    cfg = _config(tiny_setup, tmp_path / "gtrun", steps=40, val_every=10, lr=2e-3, init="random")
    res = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "distill", "--config", str(cfg)], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr
    import csv

    rows = [r for r in csv.DictReader(open(tmp_path / "gtrun" / "log.csv")) if r.get("val_abs_rel")]
    first, last = float(rows[0]["val_abs_rel"]), float(rows[-1]["val_abs_rel"])
    assert last < first
    cfg2 = _config(
        tiny_setup,
        tmp_path / "kd",
        loss="distill3r",
        cache=str(tmp_path / "cache"),
        feature_pairs={"view1.enc_out": "view1.enc_out"},
        normal_weight=0.5,
        steps=3,
    )
    res = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "distill", "--config", str(cfg2)], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr
    header = open(tmp_path / "kd" / "log.csv").readline()
    assert "distill3r" in header and "feature" in header and "normal" in header


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_setup, tmp_path):
    cfg = _config(tiny_setup, tmp_path / "ddp", steps=3, val_every=100)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29500 + np.random.randint(0, 400)),
            "-m",
            "lunar_recon",
            "distill",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "ddp" / "final.pt").exists()
    assert len(open(tmp_path / "ddp" / "log.csv").read().splitlines()) == 1 + 3


def test_export_parity_and_onnx_backend(tiny_setup, tmp_path):
    from lunar_recon.distill.export import export_model
    from lunar_recon.models.onnx import OnnxStereoModel
    from lunar_recon.models.registry import load_stereo_model

    rep = export_model(str(tiny_setup / "teacher.pt"), tmp_path / "exp", 64, 96)
    assert rep["torchscript_max_abs_diff"] < 1e-4 and rep["onnx_max_abs_diff"] < 1e-4
    import onnx

    assert onnx.load(str(tmp_path / "exp" / "model.onnx")).opset_import[0].version >= 17
    onnx_model = load_stereo_model(str(tmp_path / "exp" / "model.onnx"))  # the registry, as the node loads it
    assert isinstance(onnx_model, OnnxStereoModel)
    img = np.random.default_rng(0).integers(0, 255, (64, 96), dtype=np.uint8)
    pred = onnx_model.predict(img, img)
    eager = load_model(tiny_setup / "teacher.pt").predict(img, img, size=96)
    assert pred.points_left.shape == (64, 96, 3)
    assert np.allclose(pred.points_left, eager.points_left, atol=1e-4)


def test_the_ablation_summary_gives_the_sample_deviation_and_the_means_interval(tmp_path):
    """Three seeds of AbsRel 0.10, 0.11, 0.12: mean 0.11, sample standard deviation 0.01, and the
    mean's 95 % interval 0.11 +- 4.303 x 0.01 / sqrt(3) (Student's t, 2 degrees of freedom); a
    single seed has neither; the table prints the interval."""
    from lunar_recon.distill.ablation import COLUMNS, summarise, write_tables

    def row(variant, seed, abs_rel):
        r = {k: 1.0 for k in COLUMNS if k not in ("variant", "description")}
        return r | {"variant": variant, "seed": seed, "abs_rel": abs_rel, "description": variant}

    rows = [row("full", s, v) for s, v in enumerate((0.10, 0.11, 0.12))] + [row("alone", 0, 0.2)]
    full, alone = summarise(rows)
    assert full["abs_rel"] == pytest.approx(0.11) and full["abs_rel_std"] == pytest.approx(0.01)
    assert full["abs_rel_ci95"] == pytest.approx(4.302653 * 0.01 / 3**0.5, rel=1e-5)
    assert np.isnan(alone["abs_rel_std"]) and np.isnan(alone["abs_rel_ci95"])
    md, _ = write_tables(tmp_path, rows, "header")
    assert "0.110 ± 0.010 [0.085, 0.135]" in md.read_text()


def test_ablate_command_writes_the_table_and_resumes(tiny_setup, tmp_path):
    from lunar_recon.distill.cache import build_cache
    from lunar_recon.distill.data import TrainPairs

    build_cache(
        load_model(tiny_setup / "teacher.pt"),
        TrainPairs(tiny_setup / "data", "train", 64),
        tmp_path / "cache",
        ["view1.enc_out"],
        rank=0,
    )
    cfg = _config(
        tiny_setup,
        tmp_path / "base",
        loss="distill3r",
        cache=str(tmp_path / "cache"),
        gt_weight=0.1,
        feature_pairs={"view1.enc_out": "view1.enc_out"},
    )
    cmd = [
        sys.executable,
        "-m",
        "lunar_recon",
        "ablate",
        "--config",
        str(cfg),
        "--steps",
        "2",
        "--out",
        str(tmp_path / "abl"),
        "--variants",
        "full",
        "no_svd",
        "gt_supervision",
        "cnn_resnet",
        "narrow_decoder",
        "deep_decoder",
        "--threads",
        "1",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    import csv

    rows = list(csv.DictReader(open(tmp_path / "abl" / "ablation.csv")))
    assert [r["variant"] for r in rows] == ["full", "no_svd", "gt_supervision", "cnn_resnet", "narrow_decoder", "deep_decoder"]
    by = {r["variant"]: r for r in rows}
    assert by["full"]["parameters"] == by["no_svd"]["parameters"] != by["cnn_resnet"]["parameters"]
    assert int(by["narrow_decoder"]["parameters"]) < int(by["full"]["parameters"]) < int(by["deep_decoder"]["parameters"])
    assert all(float(r["gflops"]) > 0 and float(r["cpu_ms_p50"]) > 0 for r in rows)
    # (two steps from a random start may leave no pixel in front of the camera: NaN is allowed there)
    assert all(float(r["abs_rel"]) > 0 for r in rows if r["variant"] != "no_svd")
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert md.count("\n| ") == 1 + len(rows) and "seeds" in md
    assert by["full"]["abs_rel"] != by["no_svd"]["abs_rel"]  # the variants really train different models
    # a second run finds every variant done and reproduces the table without training
    res2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res2.returncode == 0 and list(csv.DictReader(open(tmp_path / "abl" / "ablation.csv"))) == rows
