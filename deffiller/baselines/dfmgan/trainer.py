"""DFMGAN as a task of the project's training loop (`deffiller.training.loop`), StyleGAN2 style: every step runs
G main, lazy G path-length reg, D main, lazy R1, and in stage 2 the same for D_match, then the generator EMA. Each
phase is its own Adam step on the one net it trains.

Stage 1 trains the whole generator. Stage 2 (a generator with defect blocks plus `d_match`) trains only the
defect mapping and defect blocks; the backbone never gets gradients. The draws of a step (latents, style mixing,
DiffAugment, noise inputs, path-length directions) come from torch's global RNG, which the loop seeds per step.

On several processes each one draws as many fakes as it has reals (its share of the global batch), the loop averages
every phase's gradients before its Adam step, and the running means the networks track (w_avg, the path-length
mean) are averaged at the end of each step, so every process holds the same state: the one a checkpoint keeps.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from accelerate.utils import reduce
from torch import nn

from deffiller.baselines.dfmgan.augment import DiffAugment
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.loss import (PathLengthPenalty, discriminator_loss, generator_loss, mode_seeking_loss,
                                             r1_penalty)
from deffiller.baselines.dfmgan.networks import Discriminator, Generator
from deffiller.training.loop import TrainingTask, persistent_buffers


def lazy_adam(params, cfg: DFMGANConfig, reg_interval: int) -> torch.optim.Adam:
    """Adam with lr and betas rescaled for the extra regularisation steps (StyleGAN2's lazy regularisation)."""
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=cfg.lr * ratio, betas=tuple(b**ratio for b in cfg.betas), eps=1e-8)


class DFMGANTask(TrainingTask):
    """One stage of DFMGAN; batches are {"image"} (stage 1) or {"image", "mask"} (stage 2) of real samples."""

    calls_networks_directly = True

    def __init__(self, G: Generator, D: Discriminator, cfg: DFMGANConfig, d_match: Discriminator | None = None,
                 ema_rampup: float | None = None):
        super().__init__()
        self.G, self.D, self.d_match, self.cfg = G, D, d_match, cfg
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.defect = d_match is not None
        self.nets = {"G": G, "D": D} | ({"D_match": d_match} if self.defect else {})
        self.params = {"G": G.defect_parameters() if self.defect else list(G.parameters()),
                       "D": list(D.parameters())} | ({"D_match": list(d_match.parameters())} if self.defect else {})
        G.requires_grad_(False)
        for p in (p for params in self.params.values() for p in params):
            p.requires_grad_(True)
        self.path_length = PathLengthPenalty(cfg.pl_decay)
        self.augment = DiffAugment(cfg.diffaugment)
        self.ema_rampup = ema_rampup

    def trainable_groups(self):
        return self.params

    def configure_optimizers(self, config):
        intervals = {"G": self.cfg.g_reg_interval, "D": self.cfg.d_reg_interval, "D_match": self.cfg.d_reg_interval}
        return {name: (lazy_adam(params, self.cfg, intervals[name]), None) for name, params in self.params.items()}

    def checkpoint_extras(self):
        """The EMA generator, the path-length mean and the networks' tracked buffers (w_avg)."""
        return persistent_buffers(self) | {f"G_ema.{n}": p for n, p in self.G_ema.named_parameters()}

    def train(self, mode: bool = True):
        super().train(mode)
        self.G_ema.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @contextlib.contextmanager
    def _phase(self, name: str):
        """Gradients for the parameters `name` trains only (the other nets' are off for the phase)."""
        others = [p for other, params in self.params.items() if other != name for p in params]
        for p in others:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in others:
                p.requires_grad_(True)

    def _styles(self, mapping: nn.Module, n: int) -> torch.Tensor:
        """ws for n random z, with style mixing: from a random layer on, the styles of a second z."""
        z = torch.randn(n, self.G.z_dim, device=self.device)
        ws = mapping(z)
        if torch.rand(()) < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            ws = torch.cat([ws[:, :cutoff], mapping(torch.randn_like(z), track=False)[:, cutoff:]], dim=1)
        return ws

    def _fake(self, n: int):
        ws = self._styles(self.G.mapping, n)
        defect_ws = self._styles(self.G.defect_mapping, n) if self.defect else None
        img, mask = self.G.synthesis(ws, defect_ws)
        return img, mask, ws, defect_ws

    def _match_input(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([img, torch.tanh(self.cfg.tanh_k * mask)], dim=1)

    def _g_main(self, n: int, logs: dict, update) -> None:
        cfg = self.cfg
        with self._phase("G"):
            img, mask, ws, defect_ws = self._fake(n)
            loss = generator_loss(self.D(self.augment(img)))
            logs["loss_G"] = float(loss.detach())
            if self.defect:
                match = generator_loss(self.d_match(self._match_input(img, mask)))
                loss = loss + cfg.lambda_match * match
                logs["loss_G_match"] = float(match.detach())
                if cfg.mode_seek == "w/mask":
                    half = n // 2  # the first half's backbone styles with the second half's defect styles
                    _, other_mask = self.G.synthesis(ws[:half], defect_ws[half:])
                    ms = mode_seeking_loss(defect_ws[:half], defect_ws[half:], torch.tanh(cfg.tanh_k * mask[:half]),
                                           torch.tanh(cfg.tanh_k * other_mask))
                    loss = loss + cfg.lambda_ms * ms
                    logs["loss_ms"] = float(ms.detach())
            update(loss, "G")

    def _g_reg(self, n: int, logs: dict, update) -> None:
        with self._phase("G"):
            n = n // self.cfg.pl_batch_shrink
            ws = self._styles(self.G.mapping, n)
            defect_ws = self._styles(self.G.defect_mapping, n) if self.defect else None
            if not ws.requires_grad:  # stage 2: the frozen mapping's styles; the penalty still reaches the defect blocks
                ws.requires_grad_(True)
            img, _ = self.G.synthesis(ws, defect_ws)
            penalty = self.path_length(img, ws).mean()
            update(penalty * self.cfg.pl_weight * self.cfg.g_reg_interval, "G")
            logs["pl_penalty"] = float(penalty.detach())

    def _d(self, name: str, real: torch.Tensor, fake: torch.Tensor, regularise: bool, logs: dict, update) -> None:
        """Main logistic loss, then (every d_reg_interval steps) R1 on the reals, for D or D_match."""
        net = self.nets[name]
        view = self.augment if name == "D" else (lambda x: x)  # as in DFMGAN, D_match sees unaugmented pairs
        with self._phase(name):
            loss = discriminator_loss(net(view(real)), net(view(fake)))
            update(loss, name)
            logs[f"loss_{name}"] = float(loss.detach())
        if regularise:
            with self._phase(name):
                real = real.detach().requires_grad_(True)
                penalty = r1_penalty(net(view(real)), real).mean()
                update(penalty * (self.cfg.r1_gamma / 2) * self.cfg.d_reg_interval, name)
                logs[f"r1_{name}"] = float(penalty.detach())

    @torch.no_grad()
    def _update_ema(self, steps_done: int) -> None:
        cfg, n = self.cfg, self.cfg.batch
        ema_nimg = cfg.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, steps_done * n * self.ema_rampup)
        beta = 0.5 ** (n / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def _average_tracked(self) -> None:
        """Each process tracked its running means over its own samples; their average is the global batch's."""
        mappings = [self.G.mapping] + ([self.G.defect_mapping] if self.defect else [])
        for buffer in [self.path_length.mean] + [mapping.w_avg for mapping in mappings]:
            buffer.copy_(reduce(buffer, "mean"))

    def training_step(self, model, batch, generator, step, update) -> dict:
        """One iteration of every phase on this process's reals (and as many fakes); returns the losses as floats."""
        cfg, logs = self.cfg, {}
        real, real_mask = batch["image"], batch.get("mask")
        n = len(real)
        self._g_main(n, logs, update)
        if cfg.pl_weight > 0 and step % cfg.g_reg_interval == 0:
            self._g_reg(n, logs, update)
        regularise = cfg.r1_gamma > 0 and step % cfg.d_reg_interval == 0
        with torch.no_grad():
            fake, fake_mask, _, _ = self._fake(n)
        self._d("D", real, fake, regularise, logs, update)
        if self.defect:
            with torch.no_grad():
                fake, fake_mask, _, _ = self._fake(n)
            self._d("D_match", torch.cat([real, real_mask], dim=1), self._match_input(fake, fake_mask), regularise, logs,
                    update)
        self._average_tracked()
        self._update_ema(step + 1)
        return logs
