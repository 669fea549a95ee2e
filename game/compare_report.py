"""The operator's view of "model or crowd?" (SPEC §3.5): a Markdown report (the
study's table: weighted F1 mean ± std per attribute and train/test setting, the %
change against crowd/crowd, the cost per description of each source) and a PNG bar
chart with one panel per attribute (matplotlib's Agg canvas: no display, thread-safe)."""
from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from game.compare import BASELINE
from game.compare_run import CompareReport

COLORS = {("crowd", "crowd"): "#f59e0b", ("model", "model"): "#3b82f6", ("model", "crowd"): "#10b981",
          ("model", "rewrite"): "#8b5cf6"}


def setting_name(setting: tuple[str, str]) -> str:
    return f"{setting[0]}/{setting[1]}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.0f} %"


def markdown(report: CompareReport) -> str:
    """The report as Markdown."""
    cfg = report.config
    out = ["# Model or crowd? Descriptions compared per attribute", "",
           f"Model: `{report.model_id or 'none'}` · images with known attributes: {report.images} · "
           f"{cfg.trials} random 80/20 image splits · random forest ({cfg.trees} trees) over TF-IDF · "
           "weighted F1, mean ± std (train/test source).", ""]
    changes = [s for s in report.settings if s != BASELINE]
    head = ["attribute", "images", "classes"] + [setting_name(s) for s in report.settings] + \
        [f"Δ {setting_name(s)}" for s in changes] + ["better"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = []
        for s in report.settings:
            c = row.cells.get(s)
            cells.append("—" if c is None else f"{c.mean:.3f} ± {c.std:.3f}")
        out.append("| " + " | ".join([row.attribute, str(row.images), str(row.classes)] + cells
                                     + [_pct(row.change(s)) for s in changes] + [row.winner() or "—"]) + " |")
    if not report.rows:
        out.append("| (no attribute with two values and enough described images yet) |")
    out += ["", "## Cost per description", "", "| source | descriptions | mean seconds | cost | basis |",
            "|---|---|---|---|---|"]
    for c in report.costs:
        cost = "—" if math.isnan(c.per_description) else f"{c.per_description:.5f}"
        secs = "—" if math.isnan(c.mean_seconds) else f"{c.mean_seconds:.2f}"
        out.append(f"| {c.source} | {c.descriptions} | {secs} | {cost} | {c.basis} |")
    out += ["", "Δ: % change of the mean weighted F1 against crowd/crowd. \"better\": whose own descriptions "
            "carry the attribute better (model/model vs crowd/crowd; within 0.02 a tie) — attributes the model "
            "wins can be left to it; the others need the crowd. Crowd seconds are the time players took; model seconds are "
            "measured compute."]
    if report.notes:
        out += [""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def summary_text(report: CompareReport) -> str:
    """A few plain lines for a chat message: per attribute the crowd's and the model's own
    weighted F1, the change and who is better; then the cost per description."""
    lines = [f"Model or crowd? ({report.images} images, {report.config.trials} splits, model "
             f"{report.model_id or 'none'})"]
    for row in report.rows:
        crowd, model = row.cells.get(BASELINE), row.cells.get(("model", "model"))
        crowd_s = f"{crowd.mean:.2f}" if crowd else "—"
        model_s = f"{model.mean:.2f}" if model else "—"
        lines.append(f"• {row.attribute}: crowd {crowd_s} · model {model_s} "
                     f"({_pct(row.change(('model', 'model')))}) → {row.winner() or '—'}")
    if not report.rows:
        lines.append("No attribute can be compared yet: players need to describe more images.")
    for c in report.costs:
        cost = "—" if math.isnan(c.per_description) else f"{c.per_description:.4f}"
        lines.append(f"Cost per {c.source} description: {cost} ({c.descriptions} descriptions)")
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines)


def chart_png(report: CompareReport) -> bytes:
    """One panel per attribute: a bar per train/test setting (mean weighted F1, std as error bar)."""
    n = max(1, len(report.rows))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, row in zip(axes, report.rows):
        settings = [s for s in report.settings if s in row.cells]
        ax.bar(range(len(settings)), [row.cells[s].mean for s in settings],
               yerr=[row.cells[s].std for s in settings], color=[COLORS.get(s, "#6b7280") for s in settings],
               capsize=3)
        ax.set_xticks(range(len(settings)), [setting_name(s) for s in settings], rotation=20, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{row.attribute} ({row.classes} classes)", fontsize=10)
        ax.set_ylabel("weighted F1", fontsize=8)
    for ax in axes[len(report.rows):]:
        ax.set_axis_off()
    if not report.rows:
        axes[0].text(0.5, 0.5, "no comparable attributes yet", ha="center", va="center")
    fig.suptitle("Model or crowd? weighted F1 per attribute (train/test)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(report: CompareReport, out_dir: Path) -> tuple[Path, Path]:
    """REPORT.md and compare.png in `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / "REPORT.md", out_dir / "compare.png"
    png.write_bytes(chart_png(report))
    md.write_text(markdown(report) + "\n![weighted F1 per attribute](compare.png)\n", encoding="utf-8")
    return md, png
