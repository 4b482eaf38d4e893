"""Notebook 07: generation quality of DefFiller and the baselines (Tables 3 and 7, Figs. 6, 9 and 10, and random
samples beside random real images)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deffiller.config import Profile
from deffiller.data.layout import IMAGE_DIRS, MASK_DIRS, class_of
from deffiller.experiments import baselines, generation
from deffiller.experiments.common import (REAL, ExperimentsConfig, at_size, eval_set, example_names, example_rows,
                                          fid_frame, fid_row, floor_row, mask_row, training_seconds)
from deffiller.experiments.data import start
from deffiller.experiments.masks import generated_masks_dir
from deffiller.reporting.figures import image_grid, side_by_side
from deffiller.reporting.outputs import Outputs
from deffiller.utils.io import list_images, read_image

SAMPLES = 16  # images on each side of the samples_vs_real figure


def samples_vs_real(profile: Profile, generated: Path, real: Path, count: int = SAMPLES):
    """`count` random generated images (seeded by the profile) beside as many random real ones, one of the same class
    for each, all at the dataset's size."""
    rng = np.random.default_rng(profile.seed)
    fakes = list_images(generated / IMAGE_DIRS[0])
    fakes = [fakes[i] for i in sorted(rng.choice(len(fakes), size=min(count, len(fakes)), replace=False))]
    pools = {}
    for path in list_images(real / IMAGE_DIRS[0]):
        pools.setdefault(class_of(path.stem), []).append(path)
    pools = {label: [paths[i] for i in rng.permutation(len(paths))] for label, paths in pools.items()}
    reals = [pools[class_of(path.stem)].pop() for path in fakes]
    size = profile.data.source_size
    return side_by_side([at_size(read_image(p), size) for p in fakes], [at_size(read_image(p), size) for p in reals],
                        ("DefFiller (random)", "real (random, same classes)"))


def time_vs_fid_figure(frame: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for _, row in frame.iterrows():
        ax.scatter(row["train seconds"], row["AVG"], s=40)
        ax.annotate(row["method"], (row["train seconds"], row["AVG"]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xlabel("training time (s, this run)")
    ax.set_ylabel("FID, new masks (AVG)")
    fig.tight_layout()
    return fig


def run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "07_generation_quality")
    cfg = profile.section(ExperimentsConfig)
    init = cfg.main_init
    real = eval_set(profile, source)
    classes, size = profile.data.classes, profile.data.source_size
    floor = floor_row(profile, source, "method", outputs)
    deffiller_gt = generation.generate(profile, init, real / MASK_DIRS[0], f"deffiller_{init}_gt")
    adabldm_gt = baselines.generated(profile, "adabldm_gt")
    table3 = [{"method": "DFMGAN"}, fid_row(profile, real, adabldm_gt, method="AdaBLDM"),
              fid_row(profile, real, deffiller_gt, method="DefFiller"), floor]
    outputs.table("table3", fid_frame(table3, classes), "FID, images generated from the masks of SD-Saliency-900 "
                  "(DFMGAN cannot take given masks: '-'); `real`: the floor, two disjoint sets of real images")

    new_masks = generated_masks_dir(profile)
    deffiller_new = generation.generate(profile, init, new_masks / MASK_DIRS[0], f"deffiller_{init}_new")
    sets = {"DFMGAN": baselines.generated(profile, "dfmgan_new"), "AdaBLDM": baselines.generated(profile, "adabldm_new"),
            "DefFiller": deffiller_new}
    table7 = fid_frame([*(fid_row(profile, real, folder, method=m) for m, folder in sets.items()), floor], classes)
    outputs.table("table7", table7, "FID, images generated from the newly produced masks; `real`: the floor, two "
                  "disjoint sets of real images")

    seconds = {"DFMGAN": baselines.training_seconds_tree(baselines.run_dir(profile, "dfmgan")),
               "AdaBLDM": baselines.training_seconds_tree(baselines.run_dir(profile, "adabldm")),
               "DefFiller": training_seconds(generation.model_run(profile, init))}
    methods = table7[table7["method"] != REAL]
    fig10 = methods[["method", "AVG"]].assign(**{"train seconds": methods["method"].map(seconds)})
    outputs.table("fig10_data", fig10, "Training time (this run) against FID on new masks")
    outputs.figure("fig10", time_vs_fid_figure(fig10))

    names = example_names(real, classes, cfg.figure_per_class)
    outputs.figure("fig6", image_grid({"mask": mask_row(real, names, size), **example_rows(
        {"real": real, "AdaBLDM": adabldm_gt, "DefFiller": deffiller_gt}, names, size)}, names))
    new_names = example_names(new_masks, classes, cfg.figure_per_class)
    dfmgan_names = example_names(sets["DFMGAN"], classes, cfg.figure_per_class)
    outputs.figure("fig9", image_grid({
        "DFMGAN mask": mask_row(sets["DFMGAN"], dfmgan_names, size),
        "DFMGAN": example_rows({"d": sets["DFMGAN"]}, dfmgan_names, size)["d"],
        "new mask": mask_row(new_masks, new_names, size),
        **example_rows({"AdaBLDM": sets["AdaBLDM"], "DefFiller": deffiller_new}, new_names, size)}))
    outputs.figure("samples_vs_real", samples_vs_real(profile, deffiller_gt, real))
    outputs.finish()
    return outputs
