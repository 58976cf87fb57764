"""The PNG plots of docs/BENCHMARKS.md (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MiB = 1024 * 1024
ORDER = ("naive", "upload_fileobj", "upload_fileobj_unsigned", "relay_single", "relay")
NAMES = {"naive": "naive .content + put_object", "upload_fileobj": "upload_fileobj(raw), defaults",
         "upload_fileobj_unsigned": "upload_fileobj(raw), unsigned payload (ablation)",
         "relay_single": "relay, one stream (ablation)", "relay": "relay (ranged)"}
COLORS = {"naive": "#9e9e9e", "upload_fileobj": "#5b8fd9", "upload_fileobj_unsigned": "#a9c4ee",
          "relay_single": "#f2b880", "relay": "#d9534f"}


def _size(size: int) -> str:
    return f"{size // 1024 // MiB} GiB" if size >= 1024 * MiB else f"{size // MiB} MiB"


def _bars(ax: Any, cells: dict[tuple[int, str], dict[str, float]], title: str) -> None:
    sizes = sorted({s for s, _ in cells})
    width = 0.8 / len(ORDER)
    for i, name in enumerate(ORDER):
        xs = [k + (i - (len(ORDER) - 1) / 2) * width for k, s in enumerate(sizes) if (s, name) in cells]
        ys = [cells[(s, name)]["mibps"] for s in sizes if (s, name) in cells]
        if not xs:
            continue
        bars = ax.bar(xs, ys, width, label=NAMES[name], color=COLORS[name])
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax.set_xticks(range(len(sizes)), [_size(s) for s in sizes])
    ax.set_ylabel("throughput, MiB/s (median)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)


def streaming(loop: dict, far: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    _bars(axes[0], loop, "Media into S3 over loopback (2 cores, moto)")
    _bars(axes[1], far, "Over a 150 ms RTT link, 2 MiB window per connection")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory(loop: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = sorted({s for s, _ in loop})
    for name in ORDER:
        points = [(s / MiB, loop[(s, name)]["growth_max"]) for s in sizes if (s, name) in loop]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=NAMES[name], color=COLORS[name], linewidth=2)
    ax.axhline(64, color="black", linestyle="--", linewidth=1)
    ax.text(sizes[0] / MiB, 70, "target: relay within 64 MiB of idle", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks([s / MiB for s in sizes], [_size(s) for s in sizes])
    ticks = [2**k for k in range(3, 13)]
    ax.set_yticks(ticks, [f"{t} MiB" if t < 1024 else f"{t // 1024} GiB" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("media size")
    ax.set_ylabel("peak RSS - idle RSS, MiB (worst run)")
    ax.set_title("Uploader memory while copying into S3 (loopback)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def polls(rows: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    colors = {"relay": "#d9534f", "fixed": "#5b8fd9", "official": "#9e9e9e"}
    labels = {"relay": "relay (policy.next_wait)", "fixed": "fixed 5 s / 15 s", "official": "SDK wait() back-off"}
    kinds = ("image", "video")
    keys = ("relay", "fixed", "official")
    width = 0.26
    panels = (
        ("polls per task (mean)", lambda r: r["mean_polls"], "%.1f"),
        ("detection delay, s (mean; dot = p95)", lambda r: r["mean_delay"], "%.1f"),
        ("$ per 1,000 tasks", lambda r: r["dollars"]["total"], "$%.2f"),
    )
    for ax, (title, value, fmt) in zip(axes, panels, strict=True):
        for i, key in enumerate(keys):
            found = [next(r for r in rows if r["kind"] == k and r["policy"].startswith(key)) for k in kinds]
            xs = [k + (i - 1) * width for k in range(len(kinds))]
            bars = ax.bar(xs, [value(r) for r in found], width, color=colors[key], label=labels[key])
            ax.bar_label(bars, fmt=fmt, fontsize=7, padding=2)
            if "delay" in title:
                ax.scatter(xs, [r["p95_delay"] for r in found], color="black", s=12, zorder=3)
        ax.set_xticks(range(len(kinds)), ["images (10-60 s)", "videos (1-15 min)"])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Polling policies over the same simulated tasks", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coldstart(medians: dict[str, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    names = list(medians)
    values = [medians[n] for n in names]
    colors = ["#9e9e9e" if n.startswith("baseline") else "#d9534f" for n in names]
    bars = ax.barh(range(len(names)), values, color=colors)
    ax.bar_label(bars, fmt="%.0f ms", fontsize=8, padding=3)
    base = medians[names[0]]
    ax.axvline(base * 1.25, color="black", linestyle="--", linewidth=1)
    ax.text(base * 1.25, -0.55, " 1.25x baseline", fontsize=8, va="bottom")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms in a fresh process (median)")
    ax.set_title("Cold start: the handler's imports, set-up and first poll")
    ax.set_xlim(0, max(values) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
