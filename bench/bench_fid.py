"""Inception featurisation speed for FID: images/s, median over repeats.

Rows: in-memory uint8 batches at each (image size, batch size), i.e. torch-fidelity's TF1 resize to 299 plus
InceptionV3; and one end-to-end row (read synthetic BMPs from disk, group by size, featurise) as `deffiller fid` does.

    .venv/bin/python bench/bench_fid.py [--sizes 200 256] [--batch-sizes 1 8 16 32] [--images 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import add_common_args, machine, median_time, print_table


def fid_rows(sizes=(200,), batch_sizes=(16,), images: int = 32, repeats: int = 3, device: str = "cpu",
             end_to_end: bool = True, warmup: int = 1) -> list[dict]:
    from deffiller.data.synth import synthesize
    from deffiller.evaluation.fid import Featurizer
    from deffiller.evaluation.inception_weights import resolve_weights, torch_fidelity_extractor

    weights = resolve_weights()
    extractor = torch_fidelity_extractor(weights.path).to(device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for size in sizes:
        for batch in batch_sizes:
            n = max(batch, images // batch * batch)
            data = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8).to(device)

            @torch.inference_mode()
            def run(data=data, batch=batch):
                for chunk in data.split(batch):
                    extractor(chunk)

            rows.append({"input": f"{size}x{size} in memory", "batch": batch, "images": n,
                         "images/s": n / median_time(run, device, repeats=repeats, warmup=warmup)})
    if end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            per_class = max(1, images // 3)
            files = sorted((synthesize(Path(tmp) / "set", per_class=per_class, seed=0) / "Source Images").iterdir())
            batch = 16
            featurizer = Featurizer(weights, batch_size=batch, device=device)
            rows.append({"input": "200x200 BMP files, end to end", "batch": batch, "images": len(files),
                         "images/s": len(files) / median_time(lambda: featurizer.featurise(files), device,
                                                              repeats=repeats, warmup=warmup)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 256], help="image sides (200 = SD-Saliency-900)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--images", type=int, default=32, help="images per timed run")
    add_common_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = fid_rows(args.sizes, args.batch_sizes, args.images, args.repeats, args.device)
    print(f"machine: {machine(args.device)}")
    print_table(rows, f"Inception featurisation for FID on {args.device}, images/s, median of {args.repeats} repeats")


if __name__ == "__main__":
    main()
