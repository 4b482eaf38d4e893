"""Datasets: SD-Saliency-900 and any mask/image pair folder, splits, synthetic steel defects."""
from deffiller.data.layout import Pair, class_of, find_dataset, load_pairs

__all__ = ["Pair", "class_of", "find_dataset", "load_pairs"]
