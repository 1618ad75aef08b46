"""ROS layer pieces that need no running node: encodings, synchroniser, launch file, RViz file."""

from __future__ import annotations

import ast
import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from conftest import REPO
from lunar_recon.data.encodings import EncodingError, array_to_image_fields, image_to_array, to_gray_or_rgb
from lunar_recon.ros.sync import CameraInfoCache, TimeSynchronizer


@pytest.mark.parametrize(
    "encoding,shape,dtype",
    [
        ("mono8", (4, 5), np.uint8),
        ("mono16", (4, 5), np.uint16),
        ("rgb8", (4, 5, 3), np.uint8),
        ("bgr8", (4, 5, 3), np.uint8),
        ("rgba8", (4, 5, 4), np.uint8),
        ("bgra8", (4, 5, 4), np.uint8),
    ],
)
def test_encodings_round_trip(encoding, shape, dtype):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    f = array_to_image_fields(arr, encoding)
    back = image_to_array(encoding, f["height"], f["width"], f["step"], f["data"])
    assert np.array_equal(back, arr)


def test_image_is_a_view_of_the_buffer_and_padding_is_skipped():
    h, w, step = 3, 4, 8  # 4 bytes of row padding
    buf = bytearray(range(h * step))
    arr = image_to_array("mono8", h, w, step, buf)
    assert arr.shape == (3, 4) and arr[1, 0] == 8
    assert np.shares_memory(arr, np.frombuffer(buf, np.uint8))  # no copy
    rgb = to_gray_or_rgb(np.zeros((2, 2, 4), np.uint8) + [1, 2, 3, 4], "bgra8")
    assert rgb[0, 0].tolist() == [3, 2, 1]


@pytest.mark.parametrize(
    "args,match",
    [
        (("yuv422", 2, 2, 4, bytes(8)), "unsupported"),
        (("mono8", 2, 2, 2, bytes(3)), "data length"),
        (("mono8", 0, 0, 0, b""), "empty"),
        (("mono16", 2, 2, 3, bytes(6)), "step"),
    ],
)
def test_encoding_errors(args, match):
    with pytest.raises(EncodingError, match=match):
        image_to_array(*args)


def _msg(t: float, tag: str):
    sec = int(t)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9)))), tag=tag)


def test_exact_sync_pairs_equal_stamps_only():
    out = []
    sync = TimeSynchronizer(2, 5, lambda a, b: out.append((a.tag, b.tag)))
    sync.add(0, _msg(1.0, "L1"))
    sync.add(1, _msg(1.01, "R1x"))
    assert out == []
    sync.add(1, _msg(1.0, "R1"))
    assert out == [("L1", "R1")]


def _msg_ns(sec: int, nanosec: int, tag: str):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)), tag=tag)


def test_exact_sync_tells_apart_stamps_nanoseconds_apart():
    # At today's epoch a float of seconds has ~240 ns resolution: 50 ns apart looked equal.
    out = []
    sync = TimeSynchronizer(2, 5, lambda a, b: out.append((a.tag, b.tag)))
    sec = 1_764_700_000
    sync.add(0, _msg_ns(sec, 123_456_700, "L"))
    sync.add(1, _msg_ns(sec, 123_456_750, "R50ns"))
    assert out == []
    sync.add(1, _msg_ns(sec, 123_456_700, "R"))
    assert out == [("L", "R")]


def test_approximate_sync_slop_in_nanoseconds():
    out = []
    sync = TimeSynchronizer(2, 5, lambda a, b: out.append((a.tag, b.tag)), slop=1e-6, approximate=True)
    assert sync.slop_ns == 1000
    sec = 1_764_700_000
    sync.add(0, _msg_ns(sec, 500_000_000, "L"))
    sync.add(1, _msg_ns(sec, 500_001_001, "R1001ns"))  # 1 ns beyond the slop
    assert out == []
    sync.add(1, _msg_ns(sec, 500_001_000, "R1000ns"))
    assert out == [("L", "R1000ns")]
    with pytest.raises(ValueError, match="slop"):
        TimeSynchronizer(2, 5, lambda *a: None, slop=-0.1, approximate=True)


def test_approximate_sync_newest_set_wins_and_old_are_dropped():
    out = []
    sync = TimeSynchronizer(2, 10, lambda a, b: out.append((a.tag, b.tag)), slop=0.02, approximate=True)
    for i in range(3):
        sync.add(0, _msg(1.0 + 0.1 * i, f"L{i}"))
    sync.add(1, _msg(1.205, "R2"))  # matches the newest left only
    assert out == [("L2", "R2")]
    assert sync.dropped == 2  # L0 and L1 never paired
    sync.add(1, _msg(1.1, "R_old"))  # older than what was emitted: no set
    assert len(out) == 1


def test_sync_queue_is_bounded():
    sync = TimeSynchronizer(2, 3, lambda *a: None)
    for i in range(10):
        sync.add(0, _msg(float(i), "L"))
    assert len(sync.queues[0]) == 3 and sync.dropped == 7


def test_camera_info_cache_prefers_the_image_stamp_then_the_newest():
    cache = CameraInfoCache(capacity=3)
    assert cache.lookup(10**9) == (None, True)  # nothing yet
    for i, tag in enumerate(("c0", "c1", "c2")):
        cache.add(_msg_ns(1, i * 10**8, tag))
    info, substituted = cache.lookup(1 * 10**9 + 10**8)
    assert (info.tag, substituted) == ("c1", False)  # the image's own stamp
    info, substituted = cache.lookup(1 * 10**9 + 3 * 10**8)  # its camera_info was lost
    assert (info.tag, substituted) == ("c2", True)
    cache.add(_msg_ns(1, 5 * 10**7, "late_old"))  # an old one arriving late is not the newest
    assert cache.lookup(0)[0].tag == "c2" and len(cache.by_stamp) == 3
    assert cache.lookup(1 * 10**9 + 10**8, exact_first=False)[0].tag == "c2"  # 'latest'


def test_launch_file_arguments_and_remappings():
    src = (REPO / "launch" / "stereo.launch.py").read_text()
    tree = ast.parse(src)
    args = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    names = {k.value for k in args.value.keys}
    assert names == {"namespace", "params_file", "model", "use_sim_time", "left_namespace", "right_namespace", "rviz"}
    for topic in ("left/image_rect", "left/camera_info", "right/image_rect", "right/camera_info"):
        assert f'"{topic}"' in src
    assert "lunar_recon.rviz" in src and 'executable="stereo_node"' in src


def test_params_file_matches_the_node_declarations():
    from lunar_recon.ros.stereo_node import PARAMETERS

    data = yaml.safe_load((REPO / "config" / "stereo.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    flat = {}
    for k, v in params.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    assert set(flat) == set(PARAMETERS)
    for name, (default, _, _) in PARAMETERS.items():
        assert flat[name] == default, name


def test_rviz_file_is_valid_and_shows_existing_topics():
    cfg = yaml.safe_load((REPO / "config" / "lunar_recon.rviz").read_text())
    displays = cfg["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays}
    from lunar_recon.ros.probe import OUTPUT_TOPICS

    published = {"depth/image_rect", "points2", "hazard/grid", "hazard/elevation_sigma", "hazard/image", "hazard/landing_site"}
    assert published <= topics and "left/image_rect" in topics
    assert topics <= set(OUTPUT_TOPICS) | {"left/image_rect"}  # every display shows a topic the node has
    classes = {d["Class"] for d in displays}
    assert {
        "rviz_default_plugins/Map",
        "rviz_default_plugins/PointCloud2",
        "rviz_default_plugins/Image",
        "rviz_default_plugins/PointStamped",
    } <= classes
    grid = next(d for d in displays if d["Class"] == "rviz_default_plugins/Map")
    assert grid["Topic"]["Durability Policy"] == "Transient Local"  # the grid is published latched


def _launch_module(rviz_installed: bool):
    """The launch file executed against recording stand-ins of launch / launch_ros (which are
    not on PyPI): each action records its arguments, so the launch logic can be checked here;
    the real stack runs it in test_launch_file_starts_the_node where it is installed."""
    import types

    class Recorded:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class PackageNotFoundError(Exception):
        pass

    def share(name):
        if name == "rviz2" and not rviz_installed:
            raise PackageNotFoundError(name)
        return f"/opt/share/{name}"

    stubs = {
        "launch": {"LaunchDescription": Recorded},
        "launch.actions": {
            n: type(n, (Recorded,), {}) for n in ("DeclareLaunchArgument", "LogInfo", "OpaqueFunction", "Shutdown")
        },
        "launch.substitutions": {n: type(n, (Recorded,), {}) for n in ("LaunchConfiguration", "PathJoinSubstitution")},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {})},
        "launch_ros.substitutions": {"FindPackageShare": type("FindPackageShare", (Recorded,), {})},
        "ament_index_python.packages": {"PackageNotFoundError": PackageNotFoundError, "get_package_share_directory": share},
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    try:
        for name, attrs in stubs.items():
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod
        ns: dict = {}
        exec(compile((REPO / "launch" / "stereo.launch.py").read_text(), "stereo.launch.py", "exec"), ns)
        return ns
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def _launch(ns, **given):
    cfg = {k: v for k, (v, _) in ns["ARGUMENTS"].items()}
    cfg.update(params_file="/opt/share/lunar_recon/config/stereo.yaml", **given)

    class Context:
        launch_configurations = cfg

    return ns["_actions"](Context())


def test_launch_logic_model_override_rviz_and_shutdown():
    ns = _launch_module(rviz_installed=True)
    # 1. the parameter file's model stands unless model:= is given
    node = _launch(ns)[0]
    assert node.kwargs["executable"] == "stereo_node"
    file_, overrides = node.kwargs["parameters"]
    assert file_.endswith("stereo.yaml") and "model" not in overrides and overrides["use_sim_time"] is False
    assert _launch(ns, model="sgbm")[0].kwargs["parameters"][1]["model"] == "sgbm"
    # the node's exit ends the launch
    assert type(node.kwargs["on_exit"]).__name__ == "Shutdown"
    # 3. the viewer: same namespace and clock, the left image remapped
    actions = _launch(ns, rviz="true", namespace="lander", use_sim_time="true", left_namespace="cam/left")
    rviz = actions[1]
    assert rviz.kwargs["executable"] == "rviz2" and rviz.kwargs["namespace"] == "lander"
    assert rviz.kwargs["parameters"] == [{"use_sim_time": True}]
    assert ("left/image_rect", "cam/left/image_rect") in rviz.kwargs["remappings"]
    assert type(rviz.kwargs["on_exit"]).__name__ == "Shutdown"
    # 4. the parameter file's default is found in the package share, not built from a string
    default = ns["PARAMS_FILE_DEFAULT"]
    assert type(default).__name__ == "PathJoinSubstitution"
    assert type(default.args[0][0]).__name__ == "FindPackageShare" and default.args[0][1:] == ["config", "stereo.yaml"]
    # 2. rviz:=true without rviz2: nothing starts, the launch shuts down saying why
    missing = _launch(_launch_module(rviz_installed=False), rviz="true")
    kinds = [type(a).__name__ for a in missing]
    assert kinds == ["LogInfo", "Shutdown"] and "not installed" in missing[0].kwargs["msg"]


def _ros2_launch_unavailable() -> str | None:
    """Why ``ros2 launch lunar_recon ...`` cannot run here (None where it can: a sourced ROS 2
    workspace with this package built)."""
    import shutil

    if shutil.which("ros2") is None or importlib.util.find_spec("ros2launch") is None:
        return "the ros2 launch CLI is not installed (it comes with a full ROS 2 install)"
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory("lunar_recon")
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or no ament index at all
        return "lunar_recon is not built in a sourced ROS 2 workspace (colcon build)"
    return None


@pytest.mark.skipif(_ros2_launch_unavailable() is not None, reason=str(_ros2_launch_unavailable()))
def test_ros2_launch_for_real(tmp_path):
    """The real launch stack: a namespaced launch whose parameter file says model sgbm runs
    sgbm, answers a pair on the namespaced topics, and Ctrl-C (SIGINT to the whole process
    group, as a terminal sends it) ends it cleanly with no node left behind; rviz:=true
    without rviz2 starts nothing."""
    import os
    import random
    import re
    import shutil
    import signal
    import subprocess

    from lunar_recon.ros.probe import NodeProbe, node_env
    from lunar_recon.sim.scene import plan_scene, render_scene

    fr = render_scene(plan_scene("descent", 21, width=320, height=256, altitude_m=40, off_nadir_deg=15, baseline_m=2.0))
    params = tmp_path / "user.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    model: sgbm\n    publish_points: false\n    use_attitude: false\n"
        "    up_vector: [%f, %f, %f]\n" % tuple(fr.up_left)
    )
    dom = random.randint(20, 200)
    launch = ["ros2", "launch", "lunar_recon", "stereo.launch.py"]
    proc = subprocess.Popen(
        [*launch, "namespace:=lander", f"params_file:={params}"],
        env=node_env(dom),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    t = NodeProbe(dom, namespace="lander")
    try:
        t.wait_for_node(proc, 90)
        t.publish_frame(fr, 1_900_000_000 * 10**9)
        assert t.spin(60, lambda: t.got.get("depth/image_rect") and t.diagnostics().get("model")), t.diagnostics()
        assert t.diagnostics()["model"] == "sgbm"  # the user's file, not the launch argument's default
    finally:
        t.close()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-3000:]
    assert "process has finished cleanly" in out and "Traceback" not in out, out[-3000:]
    for pid in re.findall(r"process started with pid \[(\d+)\]", out):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    if shutil.which("rviz2") is None:
        out = subprocess.run([*launch, "rviz:=true"], env=node_env(dom), capture_output=True, text=True, timeout=60)
        assert "rviz2 is not installed" in out.stdout + out.stderr and "process started" not in out.stdout + out.stderr


def test_sun_vector_parameter_is_validated():
    from lunar_recon.ros.stereo_node import PARAMETERS, validate_parameters

    assert PARAMETERS["sun_vector"][0] == [0.0, 0.0, 0.0]  # unknown by default: no shadow cue
    validate_parameters({"sun_vector": [0.0, 0.0, 0.0]})
    validate_parameters({"sun_vector": [0.3, -0.2, -0.9]})
    for bad in ([0.0, float("nan"), 1.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="sun_vector"):
            validate_parameters({"sun_vector": bad})
    with pytest.raises(ValueError, match="shadow_intensity_fraction"):
        validate_parameters({"shadow_intensity_fraction": 1.5})


def _info(K, baseline=0.0, R=None):
    from sensor_msgs.msg import CameraInfo

    from lunar_recon.ros.conversions import camera_info_msg

    msg = camera_info_msg(CameraInfo, K, baseline)
    if R is not None:
        msg.r = [float(v) for v in np.asarray(R).ravel()]
    return msg


def test_camera_infos_give_a_rectified_or_a_calibrated_raw_rig_or_a_counted_reason():
    from lunar_recon.geometry.camera import Intrinsics
    from lunar_recon.ros.conversions import MessageRejected, stereo_calibration_from_infos

    K = Intrinsics.from_fov(60.0, 64, 48)
    rect = stereo_calibration_from_infos(_info(K), _info(K, 1.5), (48, 64))
    assert rect.is_rectified and rect.baseline_m == pytest.approx(1.5)
    # raw images of a rotated rig: the pose comes from the rectifying rotations
    a = np.radians(20)
    R_r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    raw = stereo_calibration_from_infos(_info(K, R=np.eye(3)), _info(K, 1.5, R=R_r), (48, 64))
    assert not raw.is_rectified and raw.baseline_m == pytest.approx(1.5)
    np.testing.assert_allclose(raw.T_left_from_right[:3, :3], R_r, atol=1e-12)
    for bad_baseline in (0.0, 1e-9, -1.0):
        with pytest.raises(MessageRejected, match="baseline") as err:
            stereo_calibration_from_infos(_info(K), _info(K, bad_baseline), (48, 64))
        assert err.value.reason == "calibration"
    with pytest.raises(MessageRejected, match="NaN"):  # a NaN baseline is a NaN in P
        stereo_calibration_from_infos(_info(K), _info(K, float("nan")), (48, 64))
    tiny = Intrinsics(1e-12, 1e-12, 32, 24, 64, 48)
    with pytest.raises(MessageRejected, match="focal length") as err:
        stereo_calibration_from_infos(_info(tiny), _info(tiny, 1.5), (48, 64))
    assert err.value.reason == "calibration"


def test_readme_parameter_table_is_made_from_the_declarations():
    from lunar_recon.ros.stereo_node import PARAMETERS, parameter_table

    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- parameters:begin -->\n")[1].split("\n<!-- parameters:end -->")[0]
    assert table == parameter_table(), "README's parameter table drifted: run scripts/parameter_table.py"
    assert all(f"| `{name}` |" in table for name in PARAMETERS)


def test_pair_monitor_counts_incomplete_pairs_and_what_was_missing():
    from lunar_recon.ros.sync import PairMonitor

    m = PairMonitor(["left", "right"], horizon_s=1.0, max_pending=4)
    ms = 1_000_000
    m.arrived(0, 100, 0)
    m.arrived(1, 100, 1 * ms)  # complete
    m.arrived(0, 200, 2 * ms)  # right never comes ...
    m.arrived(0, 300, 3 * ms)
    m.arrived(1, 300, 4 * ms)  # ... a newer pair completes: 200 is lost
    assert (m.complete, m.incomplete, m.missing) == (2, 1, {"left": 0, "right": 1})
    m.arrived(1, 400, 5 * ms)  # left missing, and nothing newer: the horizon decides
    m.arrived(0, 500, 2000 * ms)
    assert m.incomplete == 2 and m.missing["left"] == 1
    for s in range(600, 1300, 100):  # a stream of lone left images stays bounded
        m.arrived(0, s, 2001 * ms)
    assert len(m.pending) <= 4
    approx = PairMonitor(["left", "right"], slop_s=0.01)
    approx.arrived(0, 10**9, 0)
    approx.arrived(1, 10**9 + 5 * ms, 0)  # within the slop: one pair
    assert approx.complete == 1 and approx.incomplete == 0


def test_one_camera_info_parser_for_the_node_and_the_bag_reader():
    """rclpy and rosbags CameraInfo messages go through the same parser: a camera_info with an
    all-zero P but a K (accepted by the node) gives the bag reader the same rig."""
    from lunar_recon.data.rosbag import camera_info_msg as bag_info
    from lunar_recon.data.rosbag import typestore
    from lunar_recon.geometry.camera import Intrinsics
    from lunar_recon.geometry.camera_info import CameraInfoError, stereo_calibration_from_camera_infos
    from lunar_recon.ros.conversions import stereo_calibration_from_infos

    K = Intrinsics.from_fov(60.0, 64, 48)
    ts = typestore()
    left, right = bag_info(ts, K, 0, "l"), bag_info(ts, K, 0, "r", 1.5)
    from_bag = stereo_calibration_from_camera_infos(left, right, (48, 64))
    from_node = stereo_calibration_from_infos(_info(K), _info(K, 1.5), (48, 64))
    assert from_bag.K_left == from_node.K_left and from_bag.baseline_m == pytest.approx(from_node.baseline_m)
    left.p[:] = 0.0  # an uncalibrated left P: the intrinsics come from K
    assert stereo_calibration_from_camera_infos(left, right, (48, 64)).K_left.fx == pytest.approx(K.fx)
    left.k[:] = 0.0
    with pytest.raises(CameraInfoError, match="all-zero") as err:
        stereo_calibration_from_camera_infos(left, right, (48, 64))
    assert err.value.reason == "camera_info"


def test_the_node_defaults_are_the_pipeline_dataclasses():
    """One source per parameter: the node's declared defaults, mapped as the node maps them,
    are the pipeline's dataclass defaults (a default changed in one place only fails here);
    the YAML and the README's table are checked against the declarations above."""
    from lunar_recon.pipeline import ReconstructionParams
    from lunar_recon.ros.stereo_node import PARAMETERS, reconstruction_params

    defaults = {name: spec[0] for name, spec in PARAMETERS.items()}
    assert reconstruction_params(defaults) == ReconstructionParams()
    changed = dict(
        defaults, **{"hazard.slope_max_deg": 12.0, "disparity_sigma_px": 0.2, "hazard.extent_m": 30.0, "map_threads": 2}
    )
    p = reconstruction_params(changed)
    assert p.hazard.slope_max_deg == 12.0 and p.disparity_sigma_px == 0.2 and p.hazard.extent_m == 30.0
    assert p.map_threads == 2
