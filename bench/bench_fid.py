"""Inception featurisation speed for FID on the CPU: images/s, median over repeats.

Rows: in-memory uint8 batches at each (image size, batch size), i.e. torch-fidelity's TF1 resize to 299 plus
InceptionV3; and one end-to-end row (read synthetic BMPs from disk, group by size, featurise) as `deffiller fid` does.

    .venv/bin/python bench/bench_fid.py [--sizes 200 256] [--batch-sizes 1 8 16 32] [--images 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def images_per_second(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: allocator and oneDNN kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n_images / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 256], help="image sides (200 = SD-Saliency-900)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--images", type=int, default=32, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from deffiller.data.synth import synthesize
    from deffiller.evaluation.fid import Featurizer
    from deffiller.evaluation.inception_weights import resolve_weights, torch_fidelity_extractor

    weights = resolve_weights()
    extractor = torch_fidelity_extractor(weights.path)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for size in args.sizes:
        for batch in args.batch_sizes:
            n = max(batch, args.images // batch * batch)
            data = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)

            @torch.inference_mode()
            def run(data=data, batch=batch):
                for chunk in data.split(batch):
                    extractor(chunk)

            rows.append((f"{size}x{size} in memory", batch, n, images_per_second(run, n, args.repeats)))
    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(1, args.images // 3)
        files = sorted((synthesize(Path(tmp) / "set", per_class=per_class, seed=0) / "Source Images").iterdir())
        batch = 16
        featurizer = Featurizer(weights, batch_size=batch, device="cpu")
        rows.append(("200x200 BMP files, end to end", batch, len(files),
                     images_per_second(lambda: featurizer.featurise(files), len(files), args.repeats)))

    print(f"Inception featurisation on CPU ({args.threads} threads, torch {torch.__version__}, "
          f"weights sha256 {weights.sha256[:12]}), median of {args.repeats} repeats\n")
    print(f"| {'input':<30} | batch | images | images/s |")
    print(f"|{'-' * 32}|------:|-------:|---------:|")
    for name, batch, n, speed in rows:
        print(f"| {name:<30} | {batch:>5} | {n:>6} | {speed:>8.2f} |")


if __name__ == "__main__":
    main()
