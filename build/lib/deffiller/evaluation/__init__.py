"""Evaluation: generation quality (`fid`: FID, KID, precision/recall with the offline Inception weights)."""
