"""Detector speed: parameter count, training images/s (forward + loss + backward + the official optimiser step at the
training input size) and inference images/s (eval mode with BatchNorm folded into the convolutions, channels_last,
as `deffiller detect predict` runs them) of every registered network. Random weights; medians over `--repeats`.

    .venv/bin/python bench/bench_detectors.py [--nets csepnet tsernet minet] [--batch 4] [--size 256] [--threads 1]
"""
from __future__ import annotations

import argparse

import torch
from common import add_common_args, machine, median_time, peak_memory_mb, print_table, reset_peak


def detector_rows(nets=None, batch: int = 4, size: int | None = None, repeats: int = 3, device: str = "cpu",
                  train: bool = True, warmup: int = 1) -> list[dict]:
    """One row per network; `size` replaces the official training and test input sides."""
    from deffiller.detection.predict import fuse_conv_bn
    from deffiller.detection.registry import create_detector, list_detectors
    from deffiller.detection.train import make_optimizer

    rows = []
    for name in nets or list_detectors():
        torch.manual_seed(0)
        net = create_detector(name).to(device)
        row = {"net": name, "parameters": sum(p.numel() for p in net.parameters())}
        if train:
            defaults = net.train_defaults
            side = size or net.preprocess.crop_size or net.preprocess.train_size
            x = torch.randn(batch, 3, side, side, device=device)
            target = (torch.rand(batch, 1, side, side, device=device) > 0.8).float()
            optimizer = make_optimizer(net, defaults, defaults.weight_decay)

            def step():
                optimizer.zero_grad(set_to_none=True)
                net.loss(net(x), target).backward()
                optimizer.step()

            net.train()
            reset_peak(device)
            seconds = median_time(step, device, repeats=repeats, warmup=warmup)
            row.update({"train input": f"{batch}x3x{side}x{side}", "train images/s": batch / seconds,
                        "train peak MB": peak_memory_mb(device)})
            del optimizer
        net = fuse_conv_bn(net.eval()).to(memory_format=torch.channels_last)
        side = size or net.preprocess.test_size
        x = torch.randn(batch, 3, side, side, device=device).to(memory_format=torch.channels_last)
        reset_peak(device)
        with torch.no_grad():
            seconds = median_time(lambda: net(x), device, repeats=repeats, warmup=warmup)
        row.update({"infer input": f"{batch}x3x{side}x{side}", "infer images/s": batch / seconds,
                    "infer ms/image": 1000 * seconds / batch, "infer peak MB": peak_memory_mb(device)})
        rows.append(row)
        del net
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", help="default: all registered")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, help="input side (default: each network's official sizes)")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    add_common_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = detector_rows(args.nets, args.batch, args.size, args.repeats, args.device, not args.no_train)
    print_table(rows, f"detectors ({machine(args.device)})")


if __name__ == "__main__":
    main()
