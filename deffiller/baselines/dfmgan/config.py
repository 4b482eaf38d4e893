"""The `dfmgan` profile section. Paper-profile values follow the DFMGAN code's defaults at 256 px on one GPU
(StyleGAN2-ADA `auto` config: batch 16, R1 gamma 0.0002 * 256^2 / 16, EMA 16 * 10 / 32 kimg)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from deffiller.errors import DefFillerError

STAGE1_SOURCES = ("clean_crops", "all_images")
MODE_SEEK = ("w/mask", "none")


@dataclass
class DFMGANConfig:
    SECTION: ClassVar[str] = "dfmgan"

    # networks (grayscale images: SD-Saliency-900 is single-channel)
    resolution: int = 256  # power of two; 200 px sources are resized to it and outputs back to source_size
    channel_base: int = 16384  # channels at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    res_start: int = 64  # first defect residual block (draws the mask); every resolution above gets one too
    mbstd_group: int = 4
    match_channel_base: int = 4096  # D_match (image + mask), the code's --dmatch-scale 4096/128
    match_channel_max: int = 128
    # optimisation
    batch: int = 16
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.8192
    pl_weight: float = 2.0  # path-length regularisation
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    g_reg_interval: int = 4  # lazy regularisation: PL every 4 steps, R1 every 16
    d_reg_interval: int = 16
    ema_kimg: float = 5.0
    ema_rampup: float | None = 0.05  # stage 1 only; the code disables it when fine-tuning
    diffaugment: str = "color,translation,cutout"  # DiffAugment (Zhao et al. 2020) on D's inputs, not ADA; "" = off
    # stage 1: the defect-free backbone (SD-Saliency-900 has no defect-free images)
    stage1_kimg: float = 3000.0
    stage1_source: str = "clean_crops"  # clean_crops: squares with no (dilated) mask pixel, resized up | all_images
    clean_crop_size: int = 96  # px at source size
    clean_crop_margin: int = 4  # px: mask dilation before looking for clean squares
    # stage 2: per class, backbone frozen
    stage2_kimg: float = 400.0
    lambda_match: float = 1.0  # weight of D_match in G's loss
    mode_seek: str = "w/mask"  # mode-seeking loss between the defect styles and the masks they draw | none
    lambda_ms: float = 0.1  # the code's default (its help text says 1.0)
    tanh_k: float = 10.0  # D_match and the mode-seeking loss see tanh(k * mask logits)
    # bookkeeping
    checkpoint_every: int = 1000  # steps
    log_every: int = 10  # steps between JSONL metric lines
    device: str = "auto"  # auto = cuda when available

    def steps(self, kimg: float) -> int:
        return max(1, math.ceil(kimg * 1000 / self.batch))

    def check(self, processes: int = 1) -> "DFMGANConfig":
        """DefFillerError naming the first bad setting for a run on `processes` processes; returns self."""
        from deffiller.baselines.dfmgan.networks import check_resolution
        from deffiller.training.loop import micro_batch_size

        try:
            check_resolution(self.resolution, self.res_start)
        except ValueError as exc:
            raise DefFillerError(f"dfmgan: {exc}") from exc
        if self.stage1_source not in STAGE1_SOURCES:
            raise DefFillerError(f"dfmgan.stage1_source={self.stage1_source!r}: choose one of {STAGE1_SOURCES}")
        if self.mode_seek not in MODE_SEEK:
            raise DefFillerError(f"dfmgan.mode_seek={self.mode_seek!r}: choose one of {MODE_SEEK}")
        share = micro_batch_size(self.batch, processes, 1)  # each process trains on its share of the batch
        where = f"dfmgan.batch={self.batch}" + (f" on {processes} processes ({share} each)" if processes > 1 else "")
        if self.mode_seek != "none" and share % 2:
            raise DefFillerError(f"{where}: the mode-seeking loss pairs the halves of a process's batch; use an even "
                                 f"batch per process")
        if share < self.pl_batch_shrink:
            raise DefFillerError(f"{where}: a process's batch is smaller than pl_batch_shrink={self.pl_batch_shrink}")
        return self
