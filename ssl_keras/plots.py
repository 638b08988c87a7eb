"""Matplotlib figures from plain data to PNG files (Agg backend, object API, never `plt.show()`)."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def history(hist: dict, title: str, path: str, best_epoch: int | None = None):
    """Loss and accuracy per epoch, train against validation (the article's Figures 2, 5, 7).

    `best_epoch` (0-based), the epoch of the kept checkpoint, is marked with a dashed line.
    A trainer's breed loss (`breed_loss`) is drawn as the training loss when it has one.
    """
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        train_key = "breed_loss" if metric == "loss" and "breed_loss" in hist else metric
        epochs = range(1, len(hist.get(train_key, [])) + 1)
        ax.plot(epochs, hist.get(train_key, []), "o-", label="train" if train_key == metric else "train (breed loss)")
        val = [(i + 1, v) for i, v in enumerate(hist.get(f"val_{metric}", [])) if v == v]  # NaN: not validated
        ax.plot([e for e, _ in val], [v for _, v in val], "s-", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="#555555", linestyle="--", linewidth=1,
                       label=f"kept checkpoint (epoch {best_epoch + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{title}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def rotations(images, labels, angles, path: str):
    """One photo and its four rotations with their labels (the article's Figure 3)."""
    fig = Figure(figsize=(2.6 * len(images), 3))
    for ax, img, y in zip(fig.subplots(1, len(images)), images, labels):
        ax.imshow(img.astype("uint8"))
        ax.set_title(f"label {int(y)}: {angles[int(y)]}°")
        ax.axis("off")
    return _save(fig, path)


def comparison(results: dict, path: str, title="Test accuracy", intervals: dict | None = None):
    """Bars of test accuracy per method; `results` maps name -> (mean, std) or a float.

    `intervals` (name -> (low, high)), when given, draws each bar's interval (e.g. its 95 %
    Wilson interval) instead of ± std, and says so on the axis.
    """
    names = list(results)
    means = [results[n][0] if isinstance(results[n], (tuple, list)) else results[n] for n in names]
    stds = [results[n][1] if isinstance(results[n], (tuple, list)) else 0.0 for n in names]
    if intervals:
        err = [[100 * (m - intervals[n][0]) for n, m in zip(names, means)],
               [100 * (intervals[n][1] - m) for n, m in zip(names, means)]]
        tops = [intervals[n][1] for n in names]
    else:
        err, tops = [100 * s for s in stds], [m + s for m, s in zip(means, stds)]
    fig = Figure(figsize=(1.8 + 1.5 * len(names), 4.4))
    ax = fig.subplots()
    palette = ["#999999", "#6baed6", "#2171b5", "#08519c", "#fd8d3c", "#e6550d", "#a63603", "#31a354", "#756bb1"]
    bars = ax.bar(range(len(names)), [100 * m for m in means], yerr=err, capsize=6,
                  color=[palette[i % len(palette)] for i in range(len(names))])
    ax.set_xticks(range(len(names)), [n.replace(", ", "\n", 1) for n in names], fontsize=8)
    for bar, m, top in zip(bars, means, tops):
        ax.annotate(f"{100 * m:.1f}%", (bar.get_x() + bar.get_width() / 2, 100 * top),
                    ha="center", va="bottom", xytext=(0, 4), textcoords="offset points")
    ax.set_ylabel("test accuracy (%)" + (", 95 % Wilson interval" if intervals else ""))
    ax.set_title(title)
    ax.set_ylim(0, max(100 * t for t in tops) * 1.2 + 1)
    return _save(fig, path)


def confusion(matrix, class_names, path: str, title="Confusion matrix (test)"):
    """Counts of true (rows) against predicted (columns) classes."""
    n = len(class_names)
    fig = Figure(figsize=(1.5 + 0.6 * n, 1.2 + 0.55 * n))
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i][j] > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def prediction(image, top: list, path: str, title=""):
    """One photo beside its top-k breeds and their probabilities (the article's Figure 8)."""
    fig = Figure(figsize=(9, 3.6))
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    ax_img.imshow(image.astype("uint8"))
    ax_img.axis("off")
    ax_img.set_title(title, fontsize=9)
    names = [n for n, _ in top][::-1]
    probs = [100 * p for _, p in top][::-1]
    ax_bar.barh(names, probs, color="#2171b5")
    for y, p in enumerate(probs):
        ax_bar.text(p + 1, y, f"{p:.1f}%", va="center", fontsize=8)
    ax_bar.set_xlim(0, 115)
    ax_bar.set_xlabel("probability (%)")
    return _save(fig, path)


def curves(x, series: dict, path: str, xlabel: str, ylabel: str, title: str, logx=True):
    """Lines of mean +/- std over x; `series` maps name -> (means, stds)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for name, (means, stds) in series.items():
        ax.errorbar(x, [100 * m for m in means], yerr=[100 * s for s in stds], marker="o", capsize=4, label=name)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
