"""Baselines of the paper: AdaBLDM and DFMGAN, re-implemented."""
