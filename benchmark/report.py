"""Benchmark report: a Markdown table and a PNG of per-point error heat maps on the scan."""
from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

import numpy as np

from .evaluate import MEDIAPIPE, MULTI, SINGLE, Evaluation, Score
from .metrics import DETAIL_BAND_M
from .render import REFERENCE_SHOT
from .scan import ATTRIBUTION, DISPLACEMENT_SCALE_M, HEAD_LENGTH_M, REGIONS

#: Detail score above which the high level counts as "clearly positive" in the targets.
DETAIL_TARGET = 0.1
#: Colour scale of the heat maps, millimetres.
HEAT_MAX_MM = 5.0


def machine() -> str:
    """A one-line description of this machine (CPU model and count, OS)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _label(s: Score) -> str:
    return s.method if s.level == "-" else f"{s.method}: {s.level}"


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else ("n/a" if np.isnan(value) else f"{value:.{digits}f}")


def _row(s: Score, first: str) -> str:
    cells = [first] + [_fmt(s.errors_mm[r]) for r in (*REGIONS, "all")]
    cells += [_fmt(s.detail), _fmt(s.detail_floor), _fmt(s.albedo_mae, 1),
              _fmt(s.albedo_flat_mae, 1), _fmt(s.icp_rms_mm)]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| {} | nose | mouth | forehead | cheeks | all | detail r | chance r | albedo MAE "
          "| constant MAE | ICP rms |\n|---|---|---|---|---|---|---|---|---|---|---|")


def targets(ev: Evaluation) -> list[str]:
    """The issue's three targets on the reference shot, each with its figures and verdict."""
    ref = {(s.method, s.level): s for s in ev.scores if s.shot == REFERENCE_SHOT.name}
    out = []
    mp, mid = ref.get((MEDIAPIPE, "-")), ref.get((SINGLE, "coarse+mid"))
    if mp and mid:
        gain = 1.0 - mid.errors_mm["all"] / mp.errors_mm["all"]
        out.append(f"coarse+mid mean error {mid.errors_mm['all']:.2f} mm vs MediaPipe mesh "
                   f"{mp.errors_mm['all']:.2f} mm: {100 * gain:.0f}% lower (target ≥ 25%): "
                   f"**{'met' if gain >= 0.25 else 'missed'}**")
    high = ref.get((SINGLE, "coarse+mid+high"))
    if high and high.detail is not None:
        bar = max(DETAIL_TARGET, high.detail_floor)
        out.append(f"detail score of the high level {high.detail:.3f} (target clearly positive: "
                   f"> {DETAIL_TARGET} and above chance, {high.detail_floor:.3f}): "
                   f"**{'met' if high.detail > bar else 'missed'}**")
    multi = ref.get((MULTI, "coarse+mid"))
    if multi and mid:
        better = multi.errors_mm["all"] < mid.errors_mm["all"]
        out.append(f"multi-view coarse+mid {multi.errors_mm['all']:.2f} mm vs single-view "
                   f"{mid.errors_mm['all']:.2f} mm: **{'met' if better else 'missed'}**")
    elif mid:
        out.append("multi-view lower than single-view: **not measured** (multi-view not yet available)")
    return out


def shot_summary(ev: Evaluation) -> list[str]:
    """Markdown rows, one per shot: mean error ("all", mm) of the MediaPipe mesh and of our
    single-view levels, and the high level's detail and albedo scores beside their chance levels."""
    rows = ["| shot | MediaPipe | coarse | coarse+mid | +high | detail r (chance) "
            "| albedo MAE (constant) |", "|---|---|---|---|---|---|---|"]
    for shot in dict.fromkeys(s.shot for s in ev.scores):
        by = {(s.method, s.level): s for s in ev.scores if s.shot == shot}
        if (SINGLE, "coarse+mid+high") not in by:
            continue
        high = by[(SINGLE, "coarse+mid+high")]
        mp = by.get((MEDIAPIPE, "-"))
        cells = [shot, _fmt(mp.errors_mm["all"]) if mp else "—"]
        cells += [_fmt(by[(SINGLE, lv)].errors_mm["all"]) for lv in ("coarse", "coarse+mid", "coarse+mid+high")]
        cells += [f"{_fmt(high.detail)} ({_fmt(high.detail_floor)})",
                  f"{_fmt(high.albedo_mae, 1)} ({_fmt(high.albedo_flat_mae, 1)})"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_report(ev: Evaluation, out_dir: str | Path, runtime_s: float) -> tuple[Path, Path]:
    """Write ``results.md`` and ``heatmaps.png`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "heatmaps.png"
    write_heatmaps(ev, png)
    lines = [f"# Accuracy benchmark ({date.today().isoformat()})", "",
             f"Machine: {machine()}. Runtime: {runtime_s / 60:.1f} min.", "",
             f"Ground truth: {ATTRIBUTION}; detailed surface = base mesh + displacement map "
             f"({DISPLACEMENT_SCALE_M * 1000:.0f} mm full range), scaled to a "
             f"{HEAD_LENGTH_M * 1000:.0f} mm head length. Errors: mean scan-to-reconstruction "
             "distance in mm after rigid + scale alignment (landmarks, then ICP), per REALY "
             "region, weighted by surface area. detail r: area-weighted correlation of the "
             "reconstruction's displacement with the scan's, both band-passed on the scan "
             f"surface (difference of Gaussians, σ {DETAIL_BAND_M[0] * 1000:.0f} and "
             f"{DETAIL_BAND_M[1] * 1000:.0f} mm), visible region; chance r: 95 % of random "
             "displacement fields score |r| below it. albedo MAE: 8-bit sRGB levels after a "
             "per-channel gain fitted in linear light, visible region; constant MAE: the best "
             "constant colour on the same points.", "",
             f"## Frontal reference render ({REFERENCE_SHOT.name})", "", HEADER.format("method")]
    lines += [_row(s, _label(s)) for s in ev.scores if s.shot == REFERENCE_SHOT.name]
    lines += ["", "## Targets", ""] + [f"- {t}" for t in targets(ev)]
    lines += ["", "## Per shot (summary)", ""] + shot_summary(ev)
    lines += ["", "## Every render", "", HEADER.format("render / method")]
    lines += [_row(s, f"{s.shot} / {_label(s)}") for s in ev.scores]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in ev.notes]
    lines += ["", f"![per-point error heat maps]({png.name})", ""]
    md = out / "results.md"
    md.write_text("\n".join(lines))
    return md, png


def write_heatmaps(ev: Evaluation, path: Path) -> None:
    """One panel per method/level on the reference shot: the scan's evaluation points seen from
    the front, coloured by their distance to the aligned reconstruction (0-5 mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in ev.scores if s.shot == REFERENCE_SHOT.name]
    xy = ev.scan.vertices[ev.points, :2] * 1000.0
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 4.2), squeeze=False)
    for ax, s in zip(axes[0], shown):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=s.distances * 1000.0, s=0.3, cmap="inferno",
                        vmin=0.0, vmax=HEAT_MAX_MM, rasterized=True)
        ax.set_title(f"{_label(s)}\nmean {s.errors_mm['all']:.2f} mm", fontsize=8)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.8, label="scan-to-reconstruction distance, mm")
    fig.savefig(path, dpi=110)
    plt.close(fig)
