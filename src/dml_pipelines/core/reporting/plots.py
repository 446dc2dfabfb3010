"""Report figures (matplotlib ``Figure`` objects, no pyplot state): Recall@K
curves per dataset, training curves per run, a 2-D projection of test embeddings
coloured by class, and a retrieval sheet (queries with their nearest neighbours,
correct ones framed green, wrong ones red)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dml_pipelines.core.reporting.stats import seed_stats

CORRECT, WRONG = "#1a9850", "#d73027"
#: panels per row of the multi-run figures: at 100 dpi a row is at most
#: ``PANEL_COLUMNS`` × ``PANEL_WIDTH`` inches = 1500 px wide, whatever the runs
PANEL_COLUMNS = 3
PANEL_WIDTH = 5.0


def panel_grid(n: int, height: float) -> tuple[Figure, list[Any]]:
    """A figure of ``n`` panels (at least one) in rows of :data:`PANEL_COLUMNS`;
    the unused cells of the last row are hidden. Returns the figure and the
    ``n`` axes in reading order."""
    n = max(1, n)
    cols = min(PANEL_COLUMNS, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(PANEL_WIDTH * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def recall_curves(runs: pd.DataFrame, dataset: str) -> Figure:
    """Recall@K (percent) against K for every method of ``dataset``
    (conventional protocol), mean over seeds with ± std error bars.

    Args:
        runs: the runs table (``collect_runs``).
        dataset: the dataset to plot.

    Returns:
        The figure (an empty axis with a note when there is no run).
    """
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    here = runs[(runs["dataset"] == dataset) & (runs["protocol"] == "conventional")]
    cols = sorted(
        (c for c in here.columns if c.startswith("recall@") and here[c].notna().any()),
        key=lambda c: int(c.split("@")[1]),
    )
    for method, grp in here.groupby("method"):
        ks, mean, std = [], [], []
        for c in cols:
            st = seed_stats(grp[c].tolist())
            if st:
                ks.append(int(c.split("@")[1]))
                mean.append(100 * st.mean)
                std.append(100 * (st.std or 0.0))
        ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=method)
    if here.empty:
        ax.text(0.5, 0.5, f"no runs on {dataset}", ha="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    ax.set(xlabel="K", ylabel="Recall@K (%)", title=f"Recall@K on {dataset}")
    ax.grid(alpha=0.3)
    return fig


def training_curves(histories: Mapping[str, pd.DataFrame], dataset: str) -> Figure:
    """Per-epoch training loss of every run, and the validation metrics when the
    history has them (``val/<metric>`` columns), one panel per method.

    Args:
        histories: ``{"<method>/seed<S>[/fold<F>]": training_history frame}``
            (columns ``epoch``, ``loss`` and optionally ``val/*``).
        dataset: the dataset (title).

    Returns:
        The figure.
    """
    methods = sorted({run.split("/")[0] for run in histories})
    fig, axes = panel_grid(len(methods), 3.6)
    if not methods:
        axes[0].text(0.5, 0.5, f"no training history on {dataset}", ha="center")
        return fig
    for ax, method in zip(axes, methods, strict=True):
        twin = None
        for run, hist in sorted(histories.items()):
            if run.split("/")[0] != method or "loss" not in hist:
                continue
            label = run.split("/", 1)[1]
            (line,) = ax.plot(hist["epoch"], hist["loss"], marker=".", label=label)
            for col in (c for c in hist.columns if c.startswith("val/")):
                twin = twin or ax.twinx()
                twin.plot(
                    hist["epoch"],
                    hist[col],
                    linestyle="--",
                    color=line.get_color(),
                    label=f"{label} {col}",
                )
        ax.set(xlabel="epoch", ylabel="training loss", title=f"{method} on {dataset}")
        ax.legend(fontsize=7, loc="upper left")
        if twin is not None:
            twin.set_ylabel("validation (dashed)")
            twin.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    return fig


def project_2d(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, D) embeddings -> (N, 2): ``pca`` (centred SVD) or ``tsne``
    (scikit-learn, PCA initialisation, perplexity min(30, (N − 1) / 3))."""
    x = np.asarray(x, dtype=np.float64)
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
        return TSNE(
            2, init="pca", random_state=seed, perplexity=perplexity
        ).fit_transform(x)
    raise ValueError(f"projection: invalid method {method!r}; valid: pca, tsne")


def shown_classes(sets: Mapping[str, Any], n: int, seed: int) -> np.ndarray:
    """``n`` classes drawn at random (with ``seed``) from the test classes of
    ``sets``, sorted; the same for every panel so the panels compare."""
    labels = np.unique(np.concatenate([np.asarray(es.labels) for es in sets.values()]))
    if len(labels) <= n:
        return labels
    return np.sort(np.random.default_rng(seed).choice(labels, n, replace=False))


def projection(
    sets: Mapping[str, Any],
    dataset: str,
    *,
    method: str = "tsne",
    classes: int = 10,
    max_points: int = 3000,
    seed: int = 0,
) -> Figure:
    """2-D projection of the test embeddings of a few classes, one colour per
    class, one panel per run (rows of :data:`PANEL_COLUMNS`).

    A few classes keep the picture readable: with tens of classes the colours
    repeat and no structure shows. The embeddings of those classes are
    projected on their own (t-SNE by default).

    Args:
        sets: ``{title: EmbeddingSet}`` (normalised with the set's own rule).
        dataset: the dataset (title).
        method: ``tsne`` or ``pca``.
        classes: how many test classes to show (a fixed random draw).
        max_points: points drawn per panel (a fixed random subset beyond it).
        seed: class draw, subset and t-SNE seed.

    Returns:
        The figure.
    """
    from matplotlib import colormaps

    from dml_pipelines.core.evaluation.embeddings import normalize

    fig, axes = panel_grid(len(sets), 4.4)
    shown = shown_classes(sets, classes, seed) if sets else np.array([])
    palette = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    total = 0
    for ax, (title, es) in zip(axes, sorted(sets.items()), strict=False):
        labels = np.asarray(es.labels)
        total = max(total, len(np.unique(labels)))
        keep = np.flatnonzero(np.isin(labels, shown))
        if len(keep) > max_points:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(keep, max_points, replace=False))
        x = normalize(es.embeddings, es.normalization)[keep]
        xy = project_2d(x, method, seed) if len(keep) > 2 else np.zeros((len(keep), 2))
        for i, c in enumerate(shown):
            at = labels[keep] == c
            ax.scatter(*xy[at].T, color=palette(i), s=9, alpha=0.85, label=str(c))
        ax.set(title=f"{title}: {len(keep)} images", xticks=[], yticks=[])
    if not sets:
        axes[0].text(0.5, 0.5, f"no embeddings on {dataset}", ha="center")
    else:
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, title="class", loc="outside right upper")
    fig.suptitle(
        f"{method.upper() if method == 'pca' else 't-SNE'} of the test embeddings "
        f"on {dataset}: {len(shown)} of {total} classes"
    )
    return fig


def nearest_neighbours(
    es: Any, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references of some queries (exact, by Euclidean distance after the
    set's normalisation); leave-one-out, or query -> gallery when the set has
    query/gallery flags.

    Args:
        es: an ``EmbeddingSet``.
        queries: (Q,) positions of the query rows in ``es``.
        k: neighbours per query.

    Returns:
        ``(positions (Q, k), distances (Q, k))`` into ``es``'s rows.
    """
    from dml_pipelines.core.evaluation.embeddings import normalize

    x = normalize(es.embeddings, es.normalization).astype(np.float64)
    q = x[queries]
    d2 = (q**2).sum(1)[:, None] - 2 * q @ x.T + (x**2).sum(1)[None, :]
    if es.is_gallery is not None:
        d2[:, ~np.asarray(es.is_gallery, bool)] = np.inf
    else:
        d2[np.arange(len(queries)), queries] = np.inf
    k = min(k, x.shape[0] - 1)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return order, np.sqrt(np.maximum(np.take_along_axis(d2, order, 1), 0))


def retrieval_sheet(
    es: Any,
    image_of: Callable[[int], np.ndarray],
    title: str,
    *,
    n_queries: int = 6,
    k: int = 5,
    seed: int = 0,
) -> Figure:
    """Queries (left column) with their ``k`` nearest neighbours; neighbours of
    the query's class framed green, the others red (as OML shows retrieval).

    Args:
        es: an ``EmbeddingSet`` (``index`` = index-table row ids).
        image_of: index-table row id -> (H, W, 3) uint8 image.
        title: the figure title.
        n_queries: queries shown (drawn at random with ``seed``).
        k: neighbours per query.
        seed: the query draw.

    Returns:
        The figure.
    """
    labels = np.asarray(es.labels)
    pool = (
        np.flatnonzero(np.asarray(es.is_query, bool))
        if es.is_query is not None
        else np.arange(len(labels))
    )
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(pool, min(n_queries, len(pool)), replace=False))
    nbrs, _ = nearest_neighbours(es, queries, k)
    cols = nbrs.shape[1] + 1
    fig = Figure(figsize=(1.6 * cols, 1.7 * len(queries) + 0.4), layout="constrained")
    axes = fig.subplots(len(queries), cols, squeeze=False)
    hits = 0
    for r, (q, row) in enumerate(zip(queries, nbrs, strict=True)):
        for c, pos in enumerate([q, *row]):
            ax = axes[r, c]
            ax.imshow(image_of(int(es.index[pos])), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(f"query ({labels[q]})", fontsize=8)
                colour, width = "black", 1.0
            else:
                ok = labels[pos] == labels[q]
                hits += bool(ok)
                colour, width = (CORRECT if ok else WRONG), 4.0
                ax.set_title(f"#{c} ({labels[pos]})", fontsize=8)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(width)
    total = max(1, nbrs.size)
    fig.suptitle(f"{title}: {hits}/{total} neighbours correct (green), wrong in red")
    return fig
