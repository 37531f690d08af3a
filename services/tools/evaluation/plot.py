"""DET plot (FNIR against FPIR, log axes) as a PNG beside the JSON."""

from __future__ import annotations

from pathlib import Path


def plot_det(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = [p for p in result["det"] if p["fpir"] > 0 and p["fnir"] > 0]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.plot([p["fpir"] for p in det], [p["fnir"] for p in det], color="tab:blue", label=result["model"])
    for point in result["points"]:
        ax.axvline(point["fpir_target"], color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(f"t={point['threshold']:.3f}\nTPIR={point['tpir']:.3f}", (max(point["fpir"], 1e-5), max(1 - point["tpir"], 1e-4)), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FPIR (non-mated searches that alarm)")
    ax.set_ylabel("FNIR (mated searches missed)")
    ax.set_title(f"Open-set DET: watchlist {result['watchlist_size']}, {result['mated']} mated / {result['nonmated']} non-mated")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_equity(equity: dict, path: Path) -> None:
    """FPIR per group against threshold with 95 % Wilson intervals, one panel per watchlist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    watchlists = equity["watchlists"]
    fig, axes = plt.subplots(1, len(watchlists), figsize=(6 * len(watchlists), 5), dpi=100, sharey=True)
    for ax, (name, report) in zip(list(getattr(axes, "flat", [axes])), watchlists.items(), strict=True):
        thresholds = [e["threshold"] for e in report["by_threshold"]]
        for offset, group in enumerate(sorted(report["groups"])):
            rows = [e["groups"].get(group, {"fpir": 0, "ci_low": 0, "ci_high": 0}) for e in report["by_threshold"]]
            x = [t + (offset - 4) * 0.0008 for t in thresholds]
            y = [max(r["fpir"], 1e-5) for r in rows]
            err = [[max(r["fpir"] - r["ci_low"], 0) for r in rows], [r["ci_high"] - r["fpir"] for r in rows]]
            ax.errorbar(x, y, yerr=err, label=group, fmt="o-", markersize=2, linewidth=0.8, capsize=1)
        ax.axvline(report["operating_threshold"], color="black", linestyle=":", linewidth=1)
        if report["equitable_floor"] is not None:
            ax.axvline(report["equitable_floor"], color="red", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("threshold")
        ax.set_title(f"{name} watchlist ({report['watchlist_size']} subjects, {report['searches']} searches)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes_list = list(getattr(axes, "flat", [axes]))
    axes_list[0].set_ylabel("FPIR (95 % Wilson interval)")
    axes_list[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
