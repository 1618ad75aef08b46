"""The ROS 2 package itself: manifest, install layout, command line."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO, card_student_row


def test_package_xml_is_format_3_ament_python_with_ros_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "lunar_recon"
    assert root.find("export/build_type").text == "ament_python"
    run = {e.text for e in root.findall("exec_depend")}
    assert {e.text for e in root.findall("test_depend")} >= {"launch_pytest", "python3-pytest"}
    # Every imported module with a rosdep key is declared, and nothing is declared that is not imported.
    import ast

    keys = {
        "numpy": "python3-numpy",
        "cv2": "python3-opencv",
        "yaml": "python3-yaml",
        "scipy": "python3-scipy",
        "numba": "python3-numba",
        "PIL": "python3-pil",
        "tqdm": "python3-tqdm",
        "matplotlib": "python3-matplotlib",
    }
    ros = {
        "rclpy",
        "rcl_interfaces",
        "builtin_interfaces",
        "sensor_msgs",
        "nav_msgs",
        "geometry_msgs",
        "diagnostic_msgs",
        "ament_index_python",
        "cv_bridge",
        "message_filters",
        "launch",
        "launch_ros",
        "stereo_msgs",
        "std_msgs",
        "visualization_msgs",
        "sensor_msgs_py",
    }
    pip_only = {"torch", "rosbags", "OpenEXR", "onnx", "onnxruntime"}
    imported = set()
    for path in [*REPO.glob("lunar_recon/**/*.py"), *REPO.glob("launch/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    wanted = {keys.get(m, m) for m in imported if m in keys or m in ros}
    assert wanted - run == set(), "imported but not declared"
    assert run - wanted - {"rviz2"} == set(), "declared but never imported"
    assert "rviz2" in run  # the launch file's optional viewer
    assert not (pip_only & {keys.get(m, m) for m in run})


def test_setup_cfg_installs_executables_where_ros2_run_looks():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/lunar_recon"
    assert cfg["install"]["install_scripts"] == "$base/lib/lunar_recon"


def test_setup_py_data_files(monkeypatch):
    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(REPO)
    exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    files = dict(captured["data_files"])
    assert files["share/ament_index/resource_index/packages"] == ["resource/lunar_recon"]
    assert files["share/lunar_recon"] == ["package.xml"]
    assert "share/lunar_recon/launch" in files and "share/lunar_recon/config" in files
    # the checkpoint is installed once, as package data of the (sub)package find_packages lists
    assert not any("shipped" in f for fs in files.values() for f in fs)
    assert "lunar_recon.models.shipped" in captured["packages"]
    assert "*.pt" in captured["package_data"]["lunar_recon.models.shipped"]
    assert (REPO / "resource" / "lunar_recon").exists()
    assert any(s.startswith("lunar-recon = lunar_recon.cli:main") for s in captured["entry_points"]["console_scripts"])


def test_command_line_info(fixtures_dir):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "info",
            str(fixtures_dir / "mast3r_tiny" / "checkpoint.pth"),
            "--height",
            "32",
            "--width",
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "parameters: 227,302" in out.stdout and "arch: mast3r" in out.stdout


def test_info_and_export_accept_the_model_names_the_node_accepts(tmp_path):
    from lunar_recon.models.registry import resolve_network_file, shipped_model_path

    shipped = shipped_model_path()
    assert shipped is not None  # the package ships its default student
    assert resolve_network_file("default") == str(shipped)
    assert resolve_network_file("runs/x.pt") == "runs/x.pt"
    with pytest.raises(ValueError, match="classical matcher"):
        resolve_network_file("sgbm")
    out = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "info", "default", "--height", "64", "--width", "64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "parameters:" in out.stdout and "no such model file" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "export", "sgbm", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no network file" in out.stderr and "Traceback" not in out.stderr


def test_command_line_reports_bad_model_cleanly(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    out = subprocess.run([sys.executable, "-m", "lunar_recon", "info", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "not a PyTorch checkpoint" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is not installed on this machine")
def test_colcon_build(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "lunar_recon").symlink_to(REPO)
    out = subprocess.run(
        [
            "colcon",
            "build",
            "--packages-select",
            "lunar_recon",
            "--build-base",
            str(ws / "build"),
            "--install-base",
            str(ws / "install"),
        ],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    share = ws / "install" / "lunar_recon" / "share" / "lunar_recon"
    assert (share / "package.xml").exists()
    assert (ws / "install" / "lunar_recon" / "share" / "ament_index" / "resource_index" / "packages" / "lunar_recon").exists()
    assert (ws / "install" / "lunar_recon" / "lib" / "lunar_recon" / "lunar-recon").exists()


def test_shipped_default_student_loads_and_its_card_matches_its_file():
    import hashlib
    import json

    from lunar_recon.models import load_model
    from lunar_recon.models.profile import count_parameters
    from lunar_recon.models.registry import SHIPPED_DIR, load_stereo_model, shipped_model_path

    path = shipped_model_path()
    assert path is not None and path.parent == SHIPPED_DIR, "the package must ship a default student"
    card = json.loads((SHIPPED_DIR / "model_card.json").read_text())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model = load_model(path)
    assert count_parameters(model) == card["parameters"]
    assert model.config.to_dict() == card["config"]
    embedded = model.meta["card"]
    assert embedded["inference_size"] == card["inference_size"] and embedded["scale_mode"] == card["scale_mode"]
    assert card["scale_mode"] in ("predicted", "baseline", "stereo", "stereo_local")
    # Its disparity precision (the node's hazard noise model) is in the file, measured on
    # calibration pairs that are not the test split.
    assert embedded["disparity_sigma_px"] == card["disparity_sigma_px"] > 0
    assert card["test_metrics_by_range"] and any("calibration_data" in c for c in card["commands"])
    from lunar_recon.pipeline import model_disparity_sigma

    assert model_disparity_sigma(model) == card["disparity_sigma_px"]
    # Its hazard probabilities' calibration, single frame and fused descent map, each fitted on calibration data.
    for key in ("hazard_calibration", "hazard_above", "hazard_safe_below"):
        assert embedded[key] == card[key] and embedded["descent_map_" + key] == card["descent_map_" + key], key
    assert 0 < card["hazard_safe_below"] < card["hazard_above"]
    assert any("--descent-map --fit-hazard-calibration" in c and "seq41" not in c for c in card["commands"])
    assert card["parameters"] * 50 <= 688_638_856  # at most 1/50 of the released MASt3R
    assert card["test_metrics"] and "commands" in card and any("distill" in c for c in card["commands"])
    # Beside the student, the ceiling of two-view stereo at its precision on the same test pairs.
    from lunar_recon.evaluation.runner import ceiling_label

    ceiling = card["test_metrics"][ceiling_label(card["disparity_sigma_px"])]
    student = card_student_row(card["test_metrics"], path)
    assert ceiling["frames"] == student["frames"] and ceiling["disparity_sigma_px"] > 0
    assert student["hazard_f1"] <= ceiling["hazard_f1"] < 1
    assert type(load_stereo_model("default")) is type(model)  # the node's default is this student
    assert (SHIPPED_DIR / "MODEL_CARD.md").read_text().startswith("# ")


def test_the_default_students_orbital_network_is_shipped_with_its_range():
    """The default's second network (issue 27): the default's architecture and stereo head, its
    card's network input, scale mode and hazard calibration, the range beyond which it serves,
    the commands and calibration data that made and chose it; 'default' loads both."""
    import torch

    from lunar_recon.models import load_model
    from lunar_recon.models.registry import ORBITAL_STUDENT, SHIPPED_DIR, load_stereo_model, orbital_min_range_m

    default = load_stereo_model("default")
    orbital = default.orbital.model
    assert orbital.meta["card"]["file"] == ORBITAL_STUDENT and (SHIPPED_DIR / ORBITAL_STUDENT).exists()
    assert default.orbital.min_range_m == orbital.meta["card"]["selected_above_range_m"] == 1000.0
    assert "orbital" not in dict(default.named_children())  # not a submodule: the primary's weights stay its own
    assert orbital.config.to_dict() == default.config.to_dict()
    shared = ("inference_size", "scale_mode", "disparity_sigma_px", "hazard_calibration", "hazard_above", "hazard_safe_below")
    for key in (*shared, "descent_map_hazard_calibration", "descent_map_hazard_above", "descent_map_hazard_safe_below"):
        assert orbital.meta["card"][key] == default.meta["card"][key], key
    head, own = default.stereo_head.state_dict(), orbital.stereo_head.state_dict()
    assert all(torch.equal(head[k], own[k]) for k in head)
    weights, own = default.state_dict(), orbital.state_dict()
    assert any(not torch.equal(weights[k], own[k]) for k in weights)  # its own network
    card = orbital.meta["card"]
    assert any("distill" in c for c in card["commands"]) and any("--split val" in c for c in card["commands"])
    run = " ".join(c for c in card["commands"] if not c.startswith("#")).lower()
    assert "stereolunar" not in run and card["calibration_metrics"]  # chosen on calibration data, not the held-out samples
    bare = load_model(SHIPPED_DIR / "lunar_student_default.pt")
    bare.meta = {"card": {}}
    with pytest.raises(ValueError, match="selected_above_range_m"):
        orbital_min_range_m(bare, "a card without it")


def test_benchmark_command_writes_the_side_by_side_table(tmp_path):
    import json
    import subprocess
    import sys

    from lunar_recon.models.registry import SHIPPED_DIR

    preset = json.loads((SHIPPED_DIR / "model_card.json").read_text())["config"]["name"]  # the default's own
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "benchmark",
            "--skip-mast3r",
            "--presets",
            preset,
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "benchmark.json").read_text())
    labels = [m["label"] for m in data["models"]]
    assert labels == ["default student", f"preset {preset} (random weights)", "SGBM (OpenCV)"]
    assert data["machine"]["matmul_gflops"] > 0
    student, untrained, sgbm = data["models"]  # untrained: the student's preset with random weights
    assert student["parameters"] == untrained["parameters"] > 0 and sgbm["parameters"] == 0
    assert student["stereo_head_parameters"] > 0 and student["deployed"]["stereo_head_gflops"] > 0
    assert student["deployed"]["scale_path"] == "stereo_local (stereo head)"  # no SGBM in the deployed path
    for m in data["models"]:
        for size in ("512x384", "256x256"):
            s = m["sizes"][size]
            assert 0 < s["p50"] <= s["p90"]
    assert untrained["sizes"]["512x384"]["gflops"] > untrained["sizes"]["256x256"]["gflops"] > 0
    deployed = student["deployed"]
    assert deployed["network"] == "256x192"  # the model card's inference size
    # the timing pair is near the ground, so the first stage's stereo fusion runs and is timed
    assert deployed["fused"] and 0 < deployed["p50"] <= deployed["metric_p50"] <= deployed["fused_p50"]
    md = (tmp_path / "benchmark.md").read_text()
    assert "x SGBM time" in md and md.count("| SGBM (OpenCV) |") == 2 and "Deployed setting" in md


def test_benchmark_timing_pair_has_the_disparities_it_claims():
    """The deployed timing's pair: disparity ramps from the top row's to the bottom row's."""
    import numpy as np

    from lunar_recon.geometry.stereo import SGBMParams, sgbm_disparity
    from lunar_recon.tools.benchmark import NEAR_GROUND_DISPARITY_PX, _texture_pair

    left, right = _texture_pair(384, 512, NEAR_GROUND_DISPARITY_PX)
    disparity = sgbm_disparity(left, right, SGBMParams(num_disparities=64))
    top, bottom = np.nanmedian(disparity[8:40, 100:]), np.nanmedian(disparity[-40:-8, 100:])
    expected = np.interp([24, 360], [0, 383], NEAR_GROUND_DISPARITY_PX)
    assert abs(top - expected[0]) < 0.5 and abs(bottom - expected[1]) < 0.5, (top, bottom)


def test_node_benchmark_tells_the_node_gravity_and_the_sun():
    """The node's rate is measured with the shadow bound at work: the frame's sun direction
    (and gravity) are passed as the node's parameters, in the left camera frame."""
    import numpy as np

    from lunar_recon.sim.scene import plan_scene, render_scene
    from lunar_recon.tools.benchmark import node_benchmark_params

    fr = render_scene(plan_scene("descent", 5, width=64, height=48, altitude_m=40, baseline_m=1.5))
    params = dict(p.split(":=") for p in node_benchmark_params(fr))
    assert params["use_attitude"] == "false"
    for name, truth in (("up_vector", fr.up_left), ("sun_vector", fr.sun_left)):
        value = np.array([float(v) for v in params[name].strip("[]").split(",")])
        assert np.linalg.norm(truth) > 0.99 and np.allclose(value, truth, atol=1e-5), (name, value, truth)


_FAULTS_PER_HAZARD_MAP = """
import resource, sys
import numpy as np
if sys.argv[1] == "node":
    import lunar_recon.ros  # the node's package applies the programs' settings on import
from lunar_recon.geometry import hazard_map
xy = np.random.default_rng(0).uniform(-20, 20, size=(200_000, 2))
pts = np.c_[xy, 0.1 * np.sin(xy[:, 0])]
for _ in range(2):
    hazard_map(pts, [0, 0, 1])
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    hazard_map(pts, [0, 0, 1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_programs_keep_freed_memory_so_frames_do_not_fault_their_arrays_in_again(monkeypatch):
    """In the node's process a repeated hazard map reuses its memory (a few page faults per
    map instead of thousands with glibc's defaults); a user's MALLOC_* setting wins."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {}
    for mode in ("node", "library"):
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_HAZARD_MAP, mode], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        faults[mode] = float(out.stdout.split()[-1])
    assert faults["node"] < 200 and faults["library"] > 5 * faults["node"], faults
    from lunar_recon.runtime import retain_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert retain_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert retain_freed_memory() is True


def _printed_in_a_fresh_process(code: str, unset: str) -> str:
    """What ``code`` prints in a new interpreter whose environment lacks ``unset``."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != unset}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    return out.stdout.strip()


def test_programs_ask_numpy_for_one_blas_thread(monkeypatch):
    """The node and the command line set OPENBLAS_NUM_THREADS=1 before numpy loads (its
    spinning BLAS threads halve the network's speed on 2 cores), unless the user chose."""
    import os

    from lunar_recon.runtime import prefer_single_threaded_blas

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    prefer_single_threaded_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    prefer_single_threaded_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    code = "import os, lunar_recon.ros.stereo_node; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    assert _printed_in_a_fresh_process(code, "OPENBLAS_NUM_THREADS") == "1"


@pytest.mark.parametrize(
    "variable, setter, users, nodes",
    [
        # spinning workers take the cores from the node's other stages
        ("OMP_WAIT_POLICY", "prefer_sleeping_openmp_threads", "ACTIVE", "PASSIVE"),
        # its stage threads already keep the cores busy
        ("OMP_NUM_THREADS", "prefer_one_intra_op_thread", "2", "1"),
    ],
)
def test_the_node_sets_openmp_before_torch_loads(monkeypatch, variable, setter, users, nodes):
    """The node sets OpenMP's variables before torch loads, unless the user chose; the command
    line leaves them alone."""
    import importlib
    import os

    monkeypatch.setenv(variable, users)
    getattr(importlib.import_module("lunar_recon.runtime"), setter)()
    assert os.environ[variable] == users
    code = f"import os, lunar_recon.ros.stereo_node; print(os.environ.get('{variable}'))"
    assert _printed_in_a_fresh_process(code, variable) == nodes
    code = f"import os, lunar_recon.cli; print(os.environ.get('{variable}'))"
    assert _printed_in_a_fresh_process(code, variable) == "None"
    code = "import lunar_recon.ros, sys; print('torch' in sys.modules)"  # set before torch loads
    assert _printed_in_a_fresh_process(code, variable) == "False"
    code = "import lunar_recon.ros.stereo_node, torch; print(torch.get_num_threads())"  # torch reads it
    assert _printed_in_a_fresh_process(code, "OMP_NUM_THREADS") == "1"


def test_the_suite_runs_where_launch_testing_is_installed():
    """launch_testing's pytest plugin breaks collection under pytest 9 (ros2/launch#979): the
    suite disables it and keeps pytest below 9 for launch_pytest."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "pytest.ini")
    assert "-p no:launch_testing" in cfg["pytest"]["addopts"]
    reqs = (REPO / "scripts" / "requirements.txt").read_text().splitlines()
    assert any(r.replace(" ", "").startswith("pytest>=7,<9") for r in reqs)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", str(REPO / "test" / "test_package.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0 and "error" not in res.stdout.lower(), res.stdout[-1000:]


def test_the_code_passes_the_linter():
    """ruff (ruff.toml: pycodestyle and pyflakes) over the package, launch file, scripts,
    benchmarks and tests: an unused import or an undefined name fails here, not in the field."""
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "lunar_recon", "launch", "scripts", "benchmarks", "test"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


def test_the_code_is_formatted():
    """``ruff format --check`` (ruff.toml's line length): one layout, so diffs show changes."""
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "lunar_recon", "launch", "scripts", "benchmarks", "test"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 0, "run: ruff format lunar_recon launch scripts benchmarks test\n" + res.stdout[-3000:]


def test_the_core_passes_the_type_checker():
    """mypy over the ROS-free core (mypy.ini: geometry, simulation, data, evaluation, the
    pipeline): an Optional used unchecked or a wrong argument type fails here."""
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert res.returncode == 0 and "Success" in res.stdout, res.stdout[-3000:] + res.stderr[-1000:]


# The layers, lowest first: a package imports only from layers below it (and itself).
LAYERS = {
    "geometry": 0,
    "fileio": 0,
    "progress": 0,
    "runtime": 0,
    "models": 1,
    "data": 1,
    "viz": 1,
    "sim": 2,
    "pipeline": 2,
    "evaluation": 3,
    "distill": 4,
    "ros": 4,
    "tools": 5,
    "cli": 6,
    "__main__": 7,
}


def test_no_upward_import_between_the_layers():
    """The ROS-free core below the ROS layer and the tools, no cycle: every import of a
    lunar_recon module (relative or absolute, at any depth of a function) goes down the
    layers (the public API, lunar_recon/__init__.py, re-exports from all of them)."""
    import ast

    root = REPO / "lunar_recon"
    upward = []
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts == ["lunar_recon", "__init__"]:
            continue
        module = parts[:-1] if parts[-1] == "__init__" else parts
        package = parts[:-1] if parts[-1] == "__init__" else parts[:-1]
        layer = module[1]
        assert layer in LAYERS, f"{f}: add its package to LAYERS"
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                targets = [base + (node.module.split(".") if node.module else [])]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lunar_recon."):
                targets = [node.module.split(".")]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names if a.name.startswith("lunar_recon.")]
            for t in targets:
                if len(t) > 1 and t[1] != layer and LAYERS.get(t[1], 99) >= LAYERS[layer]:
                    upward.append(f"{f.relative_to(REPO)}:{node.lineno} imports {'.'.join(t)}")
    assert not upward, "\n".join(upward)
