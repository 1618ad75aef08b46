"""Figures for the README: a rendered pair and its ground truth (made with lunar_recon only).

.venv/bin/python scripts/readme_figures.py [--out docs/images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lunar_recon.sim.scene import plan_scene, render_scene  # noqa: E402


def rendered_pair(out: Path) -> Path:
    fr = render_scene(
        plan_scene("descent", 3, width=384, height=288, altitude_m=70, off_nadir_deg=25, baseline_m=2.0, sun_elevation_deg=12)
    )
    fig, ax = plt.subplots(2, 3, figsize=(12, 6.4))
    ax[0, 0].imshow(fr.left, cmap="gray")
    ax[0, 0].set_title("left (descent, 70 m, Sun 12 deg)")
    ax[0, 1].imshow(fr.right, cmap="gray")
    ax[0, 1].set_title("right (2 m baseline)")
    im = ax[0, 2].imshow(fr.depth_left, cmap="viridis")
    ax[0, 2].set_title("depth truth (m)")
    fig.colorbar(im, ax=ax[0, 2], fraction=0.046)
    im = ax[1, 0].imshow(fr.slope_left_deg, cmap="magma", vmin=0, vmax=30)
    ax[1, 0].set_title("slope truth (deg)")
    fig.colorbar(im, ax=ax[1, 0], fraction=0.046)
    ax[1, 1].imshow(fr.shadow_left, cmap="gray_r")
    ax[1, 1].set_title("cast shadows")
    h = fr.hazard
    show = np.where(h.hazard == -1, np.nan, h.hazard.astype(float))
    ax[1, 2].imshow(show, cmap="RdYlGn_r", origin="lower", vmin=0, vmax=1)
    if h.landing_site is not None:
        ax[1, 2].plot(h.landing_site.col, h.landing_site.row, "c*", ms=14)
    ax[1, 2].set_title("hazard truth (red), landing site (*)")
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    path = out / "rendered_pair.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(rendered_pair(out))


if __name__ == "__main__":
    main()
