"""Figure builders shared by the notebooks (matplotlib; each returns a Figure)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deffiller.utils.io import read_image  # noqa: E402


def image_grid(rows: dict[str, list[np.ndarray]], titles: list[str] | None = None, cell: float = 1.4):
    """One row per key (its label on the left), images left to right."""
    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(cell * n_cols, cell * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
            if titles and r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def pairs_rows(pairs_by_label: dict, per_label: int) -> dict[str, list[np.ndarray]]:
    """Rows of image, mask, image, mask ... for each class (the layout of the paper's Fig. 3)."""
    rows = {}
    for label, pairs in pairs_by_label.items():
        cells = []
        for pair in pairs[:per_label]:
            cells += [read_image(pair.image, "L"), read_image(pair.mask, "L")]
        rows[label] = cells
    return rows


def side_by_side(left: list[np.ndarray], right: list[np.ndarray], titles: tuple[str, str], cols: int = 4,
                 cell: float = 1.2):
    """Two panels of images, `cols` wide each, a blank column between them; `titles` above the two panels."""
    rows = -(-max(len(left), len(right)) // cols)
    fig, axes = plt.subplots(rows, 2 * cols + 1, figsize=(cell * (2 * cols + 1), cell * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for offset, images in ((0, left), (cols + 1, right)):
        for i, image in enumerate(images):
            axes[i // cols, offset + i % cols].imshow(image, cmap="gray", vmin=0, vmax=255)
    for offset, title in zip((0, cols + 1), titles):
        axes[0, offset].set_title(title, fontsize=8, loc="left")
    fig.tight_layout(pad=0.3)
    return fig
