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
