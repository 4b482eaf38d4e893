"""The speed options that are meant to be exact give the same outputs as the official-style path (float tolerance),
and the benchmark command runs on the CPU and reports the ratio against that path."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.models.speed import configure_unet
from deffiller.models.text import PromptCache, encode_prompts
from deffiller.pipelines.deffiller import DefFillerPipeline, SampleConfig, make_scheduler
from deffiller.training.deffiller import DefFillerTask, TrainConfig, noise_scheduler
from deffiller.training.loop import loader_workers

REPO = Path(__file__).resolve().parent.parent
OFFICIAL = dict(attention="explicit", batched_cfg=False, cache_conditioning=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    profile = tiny_profile(tmp_path_factory.mktemp("speed"))
    return profile, tiny_parts(profile)


def masks(count: int, size: int = 64) -> list[np.ndarray]:
    out = []
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[8 + 4 * i : 30 + 4 * i, 10:40 - 3 * i] = 255
        out.append(mask)
    return out


def sample(profile, parts, **speed) -> torch.Tensor:
    pipe = DefFillerPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer,
                             make_scheduler("pndm", noise_scheduler(profile.section(TrainConfig)).config),
                             profile.data.classes)
    pipe.use_speed(dataclasses.replace(profile.section(SampleConfig), **speed))
    pipe.set_progress_bar_config(disable=True)
    classes = ["inclusion", "patches", "scratches"]
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    latents = pipe(masks(3), classes, generator=generators, num_inference_steps=3, guidance_scale=3.0,
                   output_type="latent").images
    configure_unet(parts.unet)  # back to the default for the next test
    return latents


def unet_inputs(profile, parts, batch: int = 3):
    torch.manual_seed(1)
    latent = parts.unet.config.sample_size
    sem = torch.zeros(batch, profile.data.mask_channels, 64, 64)
    sem[:, 0] = 1
    sem[:, 0, 10:30, 12:40] = 0
    sem[:, 2, 10:30, 12:40] = 1
    text = encode_prompts(parts.tokenizer, parts.text_encoder, ["patches", "", "scratches"][:batch], "cpu")
    return torch.randn(batch, 4, latent, latent), torch.tensor([10, 500, 990][:batch]), text, sem, torch.tensor([1.0, 0.0, 1.0])


@torch.no_grad()
def test_sdpa_equals_explicit_attention_everywhere(setup):
    """Every attention (self, cross and the fusers' gated self-attention) switches implementation together."""
    profile, parts = setup
    x, t, text, sem, grounded = unet_inputs(profile, parts)
    fusers = [m for n, m in parts.unet.named_modules() if n.endswith("fuser.attn")]
    assert fusers
    out = {}
    for kind in ("sdpa", "explicit"):
        configure_unet(parts.unet, kind)
        assert {type(m.processor).__name__ for m in fusers} == {"AttnProcessor2_0" if kind == "sdpa" else "AttnProcessor"}
        out[kind] = parts.unet(x, t, text, sem, grounded).sample
    configure_unet(parts.unet)
    assert out["sdpa"].abs().max() > 1e-3
    torch.testing.assert_close(out["sdpa"], out["explicit"], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_channels_last_and_precomputed_grounding_equal_the_default(setup):
    profile, parts = setup
    x, t, text, sem, grounded = unet_inputs(profile, parts)
    reference = parts.unet(x, t, text, sem, grounded).sample
    grounding = parts.unet.encode_grounding(sem, grounded)
    torch.testing.assert_close(parts.unet(x, t, text, grounding=grounding).sample, reference, atol=1e-6, rtol=1e-6)
    configure_unet(parts.unet, channels_last=True)
    assert parts.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    try:
        torch.testing.assert_close(parts.unet(x, t, text, sem, grounded).sample, reference, atol=1e-5, rtol=1e-5)
    finally:
        configure_unet(parts.unet)


def test_sampling_fast_path_equals_official_style_path(setup):
    """Batched CFG (one UNet call for both halves), cached prompts and grounding, SDPA == two calls, explicit
    attention, everything recomputed at every step; each option alone and all together."""
    profile, parts = setup
    official = sample(profile, parts, **OFFICIAL)
    assert official.abs().max() > 1e-2
    for option in ({"batched_cfg": True}, {"cache_conditioning": True}, {"attention": "sdpa"}):
        torch.testing.assert_close(sample(profile, parts, **(OFFICIAL | option)), official, atol=1e-5, rtol=1e-5,
                                   msg=lambda m, option=option: f"{option}: {m}")
    torch.testing.assert_close(sample(profile, parts), official, atol=1e-5, rtol=1e-5)


def test_prompt_cache_equals_encoding_each_time(setup):
    _, parts = setup
    cache = PromptCache(parts.tokenizer, parts.text_encoder)
    prompts = ["patches", "", "inclusion", "patches"]
    first = cache(prompts, "cpu")
    assert set(cache.states) == {"patches", "", "inclusion"}
    torch.testing.assert_close(first, encode_prompts(parts.tokenizer, parts.text_encoder, prompts, "cpu"),
                               atol=1e-6, rtol=1e-6)
    again = cache(["inclusion", "patches"], "cpu")
    assert torch.equal(again, first[2:])


def test_cached_latents_and_text_give_the_same_losses(setup):
    """A training step draws the same loss with the VAE posterior and prompts cached as without (first visit and
    later visits, flipped or not)."""
    profile, parts = setup
    torch.manual_seed(3)
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    sem = torch.zeros(4, profile.data.mask_channels, 64, 64)
    sem[:, 1, 20:40, 5:50] = 1
    sem[:, 0] = 1 - sem[:, 1]
    names = ["In_1", "Pa_2", "Sc_3", "In_4"]
    cfg = profile.section(TrainConfig)
    plain = DefFillerTask(parts, dataclasses.replace(cfg, cache_latents=False, cache_text=False)).eval()
    cached = DefFillerTask(parts, dataclasses.replace(cfg, cache_latents=True, cache_text=True)).eval()
    steps = [[0, 1], [2, 3], [1, 2], [3, 0], [0, 1], [2, 1]]
    with torch.no_grad():
        for step, rows in enumerate(steps):
            batch = {"pixel_values": images[rows], "sem": sem[rows], "prompt": [profile.data.classes[i % 3] for i in rows],
                     "name": [names[i] for i in rows]}
            losses = [task(batch, torch.Generator().manual_seed(step)) for task in (plain, cached)]
            torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
    assert len(cached.posteriors) > len(names)  # both flips of some images were seen
    assert set(cached.prompts.states) <= set(profile.data.classes)


def test_loader_workers_sized_to_the_machine():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert loader_workers(-1) == min(8, max(0, cores - 1))
    assert loader_workers(3) == 3 and loader_workers(0) == 0


def test_bench_command_runs_on_cpu_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--config", "tiny", "--device", "cpu",
                             "--repeats", "1", "--quick", "--json", str(out)], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"cpu", "torch", "diffusers"} <= set(report["machine"])
    ratios = report["ratios"]
    for key in ("train_speedup_vs_official", "generate_speedup_vs_official"):
        assert ratios[key] > 0
    rows = {row["measure"] for row in report["rows"]}
    assert {"train official-style", "train default", "generate official-style", "generate default"} <= rows
    assert "official-style" in result.stdout and "ratio" in result.stdout
