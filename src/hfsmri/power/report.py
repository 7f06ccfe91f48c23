"""Power results -> ``power.tsv``, ``false_positives.tsv``, ``power_curve.png`` and a
self-contained ``power.html`` (the figure is embedded as base64)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_power_report"]

CORRECTIONS = {"fwe": "FWE", "fdr": "FDR", "uncorrected": "uncorrected"}


def _plot(power: pd.DataFrame, fp: pd.DataFrame, alpha: float, correction: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    prim = power[power["primary"]] if len(power) else power
    group = prim[prim["contrast"] == "patient-vs-control"] if len(prim) else prim
    clin = prim[prim["contrast"] != "patient-vs-control"] if len(prim) else prim
    panels = [("group differences (patients vs controls)", group), ("clinical correlations (patients)", clin)]
    panels = [p for p in panels if len(p[1])]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.2 * (len(panels) + 1), 4.6), squeeze=False)
    axes = axes[0]
    col = f"power_{correction}"
    for ax, (title, df) in zip(axes, panels):
        cmap = plt.get_cmap("tab20")
        for i, (eid, g) in enumerate(df.groupby(["effect_id", "contrast"], sort=False)):
            g = g.sort_values("n_per_group")
            lab = eid[0] if eid[1] == "patient-vs-control" else f"{eid[0]} ({eid[1][5:]})"
            ax.plot(g["n_per_group"], g[col], "o-", lw=1.2, ms=3, color=cmap(i % 20), label=lab)
        if "analytic_uncorrected" in df and df["analytic_uncorrected"].notna().any():
            for (kind, es), g in df.groupby(["effect_size_type", df["effect_size"].abs()]):
                g = g.groupby("n_per_group")["analytic_uncorrected"].first()
                sym = "d" if kind == "cohens_d" else "|r|"
                ax.plot(g.index, g.to_numpy(), "--", color="0.5", lw=1)
                ax.annotate(f"{sym}={es:g}", (g.index[-1], g.to_numpy()[-1]), fontsize=6, color="0.4",
                            xytext=(2, -6), textcoords="offset points")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.8, color="0.8", lw=0.8, zorder=0)
        ax.set_xlabel("subjects per group")
        ax.set_ylabel(f"power ({CORRECTIONS[correction]} corrected)" if correction != "uncorrected" else "power")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=5.5, ncol=2, loc="lower right", frameon=False)
    ax = axes[-1]
    allrow = fp[fp["analysis"] == "all"].sort_values("n_per_group")
    fam = fp[fp["analysis"] != "all"].groupby("n_per_group")
    for c, style in (("uncorrected", ":"), ("fdr", "--"), ("fwe", "-")):
        ax.plot(allrow["n_per_group"], allrow[f"fwer_{c}"], "o" + style, color="C3", ms=3,
                label=f"study-wide, {CORRECTIONS[c]}")
        m = fam[f"fwer_{c}"].mean()
        ax.plot(m.index, m.to_numpy(), "s" + style, color="C0", ms=3, label=f"per family (mean), {CORRECTIONS[c]}")
    ax.axhline(alpha, color="k", lw=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("subjects per group")
    ax.set_ylabel("P(at least one false positive)")
    ax.set_title("false positives", fontsize=10)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _pivot(df: pd.DataFrame, index: list, value: str) -> pd.DataFrame:
    if df.empty:
        return df
    p = df.pivot_table(index=index, columns="n_per_group", values=value, aggfunc="first", sort=False)
    p.columns = [f"n={c}" for c in p.columns]
    return p


def _fmt_pct(df: pd.DataFrame) -> pd.DataFrame:
    return df.map(lambda v: "" if pd.isna(v) else f"{100 * v:.0f}%")


def write_power_report(output_dir, power: pd.DataFrame, fp: pd.DataFrame, settings: dict,
                       correction: str = "fwe") -> Path:
    """Write the TSVs, the PNG and ``power.html`` into ``output_dir``; returns the HTML path."""
    from ..derivatives import save_tsv_atomic, write_text_atomic

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_tsv_atomic(power, out / "power.tsv")
    save_tsv_atomic(fp, out / "false_positives.tsv")
    write_text_atomic(out / "power_settings.json", json.dumps(settings, indent=2, default=str))
    png = _plot(power, fp, float(settings.get("alpha", 0.05)), correction)
    tmp = out / "power_curve.png.tmp"
    tmp.write_bytes(png)
    tmp.replace(out / "power_curve.png")

    prim = power[power["primary"]] if len(power) else power
    idx = ["effect_id", "contrast", "analysis", "metric", "effect_size"]
    if "effect_size_source" in prim:                 # ROI engine: planted or measured after the pipeline
        idx = ["effect_id", "contrast", "analysis", "metric", "planted_effect_size", "effect_size", "effect_size_source"]
    tab_power = _fmt_pct(_pivot(prim, idx, f"power_{correction}"))
    tab_unc = _fmt_pct(_pivot(prim, idx, "power_uncorrected"))
    tab_an = _fmt_pct(_pivot(prim, idx, "analytic_uncorrected")) if prim["analytic_uncorrected"].notna().any() else None
    fam = fp[fp["analysis"] == "all"].set_index("n_per_group")[
        ["n_null_tests", "fwer_uncorrected", "fwer_fdr", "fwer_fwe", "fpr_uncorrected", "fpr_fdr", "fpr_fwe"]]
    fam_fmt = fam.copy()
    for c in fam.columns[1:]:
        fam_fmt[c] = fam[c].map(lambda v: f"{100 * v:.1f}%")
    e = html.escape
    engine_doc = settings.get("engine_description", "")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>hfsmri power analysis</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}.note{color:#555;font-size:13px}</style>",
        "</head><body><h1>Power analysis by simulation</h1>",
        "<p class='note'>" + e(f"engine: {settings.get('engine')}, test: {settings.get('test')}, "
                               f"effects: {settings.get('effects')}, group sizes (per group): {settings.get('ns')}, "
                               f"simulated studies per size: {settings.get('n_sim')}, alpha: {settings.get('alpha')}, "
                               f"seed: {settings.get('seed')}, effect sizes: {settings.get('effect_sizes', 'planted')}")
        + "</p>",
        f"<p class='note'>{e(engine_doc)}</p>",
        f"<img alt='power curves' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        f"<h2>Power to detect each planted effect ({e(CORRECTIONS[correction])} corrected)</h2>",
        "<p class='note'>Probability that the effect's test is significant with the planted sign; primary "
        "analysis/metric of each effect (all analyses in power.tsv). Monte Carlo standard error: "
        f"about {100 * 0.5 / np.sqrt(max(int(settings.get('n_sim', 1)), 1)):.0f} points at 50 % power.</p>",
        tab_power.to_html(escape=True) if len(tab_power) else "<p>no planted effects</p>",
        "<h2>Uncorrected power</h2>", tab_unc.to_html(escape=True) if len(tab_unc) else "",
    ]
    if tab_an is not None and len(tab_an):
        parts += ["<h2>Analytic power (one test, uncorrected)</h2>",
                  "<p class='note'>Noncentral t (group) and Fisher z (correlation) for the same effect size: "
                  "checks the simulation.</p>", tab_an.to_html(escape=True)]
    parts += ["<h2>False positives</h2>",
              "<p class='note'>fwer_*: probability of at least one significant null test in the whole study "
              "(all analyses and contrasts); fpr_*: share of null tests that are significant. Per family: "
              "false_positives.tsv.</p>", fam_fmt.to_html(escape=True),
              "<p class='note'>Tables: <a href='power.tsv'>power.tsv</a>, "
              "<a href='false_positives.tsv'>false_positives.tsv</a>; settings: "
              "<a href='power_settings.json'>power_settings.json</a>.</p></body></html>"]
    return write_text_atomic(out / "power.html", "\n".join(parts))
