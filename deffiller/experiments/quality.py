"""Notebook 07: generation quality of DefFiller and the baselines (Tables 3 and 7, Figs. 6, 9 and 10)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.experiments import baselines, generation
from deffiller.experiments.common import (ExperimentsConfig, eval_set, example_names, example_rows, fid_frame, fid_row,
                                          training_seconds)
from deffiller.experiments.data import start
from deffiller.experiments.masks import generated_masks_dir
from deffiller.reporting.figures import image_grid
from deffiller.reporting.outputs import Outputs
from deffiller.utils.io import read_image


def _masks(folder, names):
    return [read_image(folder / MASK_DIRS[0] / f"{n}.png") for n in names]


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
    init = cfg.inits[-1]
    real = eval_set(profile, source)
    classes = profile.data.classes
    deffiller_gt = generation.generate(profile, init, real / MASK_DIRS[0], f"deffiller_{init}_gt")
    adabldm_gt = baselines.generated(profile, "adabldm_gt")
    table3 = [{"method": "DFMGAN"}, fid_row(profile, real, adabldm_gt, method="AdaBLDM"),
              fid_row(profile, real, deffiller_gt, method="DefFiller")]
    outputs.table("table3", fid_frame(table3, classes), "FID, images generated from the masks of SD-Saliency-900 "
                  "(DFMGAN cannot take given masks: '-')")

    new_masks = generated_masks_dir(profile)
    deffiller_new = generation.generate(profile, init, new_masks / MASK_DIRS[0], f"deffiller_{init}_new")
    sets = {"DFMGAN": baselines.generated(profile, "dfmgan_new"), "AdaBLDM": baselines.generated(profile, "adabldm_new"),
            "DefFiller": deffiller_new}
    table7 = fid_frame([fid_row(profile, real, folder, method=m) for m, folder in sets.items()], classes)
    outputs.table("table7", table7, "FID, images generated from the newly produced masks")

    seconds = {"DFMGAN": baselines.training_seconds_tree(baselines.run_dir(profile, "dfmgan")),
               "AdaBLDM": baselines.training_seconds_tree(baselines.run_dir(profile, "adabldm")),
               "DefFiller": training_seconds(generation.model_run(profile, init))}
    fig10 = table7[["method", "AVG"]].assign(**{"train seconds": table7["method"].map(seconds)})
    outputs.table("fig10_data", fig10, "Training time (this run) against FID on new masks")
    outputs.figure("fig10", time_vs_fid_figure(fig10))

    names = example_names(real, classes, cfg.figure_per_class)
    outputs.figure("fig6", image_grid({"mask": _masks(real, names), "real": example_rows({"r": real}, names)["r"],
                                       **example_rows({"AdaBLDM": adabldm_gt, "DefFiller": deffiller_gt}, names)}, names))
    new_names = example_names(new_masks, classes, cfg.figure_per_class)
    dfmgan_names = example_names(sets["DFMGAN"], classes, cfg.figure_per_class)
    outputs.figure("fig9", image_grid({
        "DFMGAN mask": _masks(sets["DFMGAN"], dfmgan_names), "DFMGAN": example_rows({"d": sets["DFMGAN"]}, dfmgan_names)["d"],
        "new mask": _masks(new_masks, new_names),
        **example_rows({"AdaBLDM": sets["AdaBLDM"], "DefFiller": deffiller_new}, new_names)}))
    outputs.finish()
    return outputs
