"""Saliency-based defect detection: the detectors (CSEPNet, TSERNet, MINet), their training, prediction, the
saliency metrics, and the data-substitution / data-expansion protocols of the paper."""
