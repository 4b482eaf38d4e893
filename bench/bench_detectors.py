"""Detector speed: parameter count and inference images/s of every registered network (random weights, eval mode
with BatchNorm folded into the convolutions as `deffiller detect predict` runs them), at each network's official
test size or at `--size`. Medians over `--repeats` timed batches.

    .venv/bin/python bench/bench_detectors.py [--nets csepnet tsernet minet] [--batch 4] [--size 256] [--threads 1]
"""
from __future__ import annotations

import argparse

import torch
from common import machine, median_time, peak_memory_mb, print_table, reset_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", help="default: all registered")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, help="input side (default: each network's official test size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from deffiller.detection.predict import fuse_conv_bn
    from deffiller.detection.registry import create_detector, list_detectors

    rows = []
    for name in args.nets or list_detectors():
        torch.manual_seed(0)
        net = create_detector(name)
        params = sum(p.numel() for p in net.parameters())
        net = fuse_conv_bn(net.eval()).to(args.device, memory_format=torch.channels_last)
        size = args.size or net.preprocess.test_size
        x = torch.randn(args.batch, 3, size, size, device=args.device).to(memory_format=torch.channels_last)
        reset_peak(args.device)
        with torch.no_grad():
            seconds = median_time(lambda: net(x), args.device, repeats=args.repeats)
        rows.append({"net": name, "parameters": params, "input": f"{args.batch}x3x{size}x{size}",
                     "images/s": args.batch / seconds, "ms/image": 1000 * seconds / args.batch,
                     "peak MB": peak_memory_mb(args.device)})
        del net
    print_table(rows, f"detector inference ({machine(args.device)})")


if __name__ == "__main__":
    main()
