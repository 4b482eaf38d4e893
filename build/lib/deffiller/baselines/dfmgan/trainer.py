"""One DFMGAN training step, StyleGAN2 style: G main, lazy G path-length reg, D main, lazy R1, and in stage 2
the same for D_match, then the generator EMA. Each phase is its own Adam step on the one net it trains.

Stage 1 trains the whole generator. Stage 2 (a generator with defect blocks plus `d_match`) trains only the
defect mapping and defect blocks; the backbone never gets gradients.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from deffiller.baselines.dfmgan.augment import DiffAugment
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.loss import (PathLengthPenalty, discriminator_loss, generator_loss, mode_seeking_loss,
                                             r1_penalty)
from deffiller.baselines.dfmgan.networks import Discriminator, Generator


def lazy_adam(params, cfg: DFMGANConfig, reg_interval: int) -> torch.optim.Adam:
    """Adam with lr and betas rescaled for the extra regularisation steps (StyleGAN2's lazy regularisation)."""
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=cfg.lr * ratio, betas=tuple(b**ratio for b in cfg.betas), eps=1e-8)


class Trainer:
    def __init__(self, G: Generator, D: Discriminator, cfg: DFMGANConfig, reals, d_match: Discriminator | None = None,
                 ema_rampup: float | None = None):
        self.G, self.D, self.d_match, self.cfg, self.reals = G, D, d_match, cfg, reals
        self.G_ema = copy.deepcopy(G).eval()
        self.defect = d_match is not None
        self.nets = {"G": G, "D": D} | ({"D_match": d_match} if self.defect else {})
        self.params = {"G": G.defect_parameters() if self.defect else list(G.parameters()),
                       "D": list(D.parameters())} | ({"D_match": list(d_match.parameters())} if self.defect else {})
        intervals = {"G": cfg.g_reg_interval, "D": cfg.d_reg_interval, "D_match": cfg.d_reg_interval}
        self.opts = {name: lazy_adam(params, cfg, intervals[name]) for name, params in self.params.items()}
        for net in [*self.nets.values(), self.G_ema]:
            net.requires_grad_(False)
        self.device = next(G.parameters()).device
        self.path_length = PathLengthPenalty(cfg.pl_decay).to(self.device)
        self.augment = DiffAugment(cfg.diffaugment)
        self.ema_rampup = ema_rampup
        self.step = 0

    @contextlib.contextmanager
    def _phase(self, name: str):
        """Gradients on for the parameters `name` trains only, then one optimiser step."""
        params, opt = self.params[name], self.opts[name]
        opt.zero_grad(set_to_none=True)
        for p in params:
            p.requires_grad_(True)
        try:
            yield
            opt.step()
        finally:
            for p in params:
                p.requires_grad_(False)

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

    def _g_main(self, logs: dict) -> None:
        cfg, n = self.cfg, self.cfg.batch
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
            loss.backward()

    def _g_reg(self, logs: dict) -> None:
        with self._phase("G"):
            n = self.cfg.batch // self.cfg.pl_batch_shrink
            ws = self._styles(self.G.mapping, n)
            defect_ws = self._styles(self.G.defect_mapping, n) if self.defect else None
            if not ws.requires_grad:  # stage 2: the frozen mapping's styles; the penalty still reaches the defect blocks
                ws.requires_grad_(True)
            img, _ = self.G.synthesis(ws, defect_ws)
            penalty = self.path_length(img, ws).mean()
            (penalty * self.cfg.pl_weight * self.cfg.g_reg_interval).backward()
            logs["pl_penalty"] = float(penalty.detach())

    def _d(self, name: str, real: torch.Tensor, fake: torch.Tensor, regularise: bool, logs: dict) -> None:
        """Main logistic loss, then (every d_reg_interval steps) R1 on the reals, for D or D_match."""
        net = self.nets[name]
        view = self.augment if name == "D" else (lambda x: x)  # as in DFMGAN, D_match sees unaugmented pairs
        with self._phase(name):
            loss = discriminator_loss(net(view(real)), net(view(fake)))
            loss.backward()
            logs[f"loss_{name}"] = float(loss.detach())
        if regularise:
            with self._phase(name):
                real = real.detach().requires_grad_(True)
                penalty = r1_penalty(net(view(real)), real).mean()
                (penalty * (self.cfg.r1_gamma / 2) * self.cfg.d_reg_interval).backward()
                logs[f"r1_{name}"] = float(penalty.detach())

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg, n = self.cfg, self.cfg.batch
        ema_nimg = cfg.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.step * n * self.ema_rampup)
        beta = 0.5 ** (n / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def train_step(self) -> dict:
        """One iteration of every phase; returns the losses as floats."""
        cfg, logs = self.cfg, {}
        self._g_main(logs)
        if cfg.pl_weight > 0 and self.step % cfg.g_reg_interval == 0:
            self._g_reg(logs)
        real, real_mask = self.reals.sample(cfg.batch, self.device)
        regularise = cfg.r1_gamma > 0 and self.step % cfg.d_reg_interval == 0
        with torch.no_grad():
            fake, fake_mask, _, _ = self._fake(cfg.batch)
        self._d("D", real, fake, regularise, logs)
        if self.defect:
            with torch.no_grad():
                fake, fake_mask, _, _ = self._fake(cfg.batch)
            self._d("D_match", torch.cat([real, real_mask], dim=1), self._match_input(fake, fake_mask), regularise, logs)
        self.step += 1
        self._update_ema()
        return logs

    def state_dict(self) -> dict:
        state = {"step": self.step, "G_ema": self.G_ema.state_dict(), "path_length": self.path_length.state_dict(),
                 "rng_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        for name, net in self.nets.items():
            state[name], state[f"opt_{name}"] = net.state_dict(), self.opts[name].state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.G_ema.load_state_dict(state["G_ema"])
        self.path_length.load_state_dict(state["path_length"])
        for name, net in self.nets.items():
            net.load_state_dict(state[name])
            self.opts[name].load_state_dict(state[f"opt_{name}"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
