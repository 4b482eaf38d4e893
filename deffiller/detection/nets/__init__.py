"""Saliency detectors, one module per network (`minet.py`, `csepnet.py`, `tsernet.py`), loaded through the registry.

The contract every network module follows:

- It defines a subclass of `Detector` (from `deffiller.detection.registry`, re-exported here), built with no
  arguments, and registers it:

      @register_detector("minet")
      class MINet(Detector): ...

  A network with an ImageNet backbone names its torchvision model (`@register_detector("csepnet",
  backbone="vgg16_bn")`) and loads a LOCAL file of those weights (torchvision state dict) in `load_backbone(path)`;
  `create_detector(name, backbone_weights)` calls it, and training resolves the profile's `detect.backbone_weights`
  (a torchvision weights name such as IMAGENET1K_V1, or a path) to that file. Weights given to a network without a
  backbone (MINet) are an error.
- `forward(x)` takes (B,3,H,W) normalised images and returns a list of side-output LOGITS (B,1,H,W), all at the input
  size; the first one is the prediction. No sigmoid inside the network.
- `loss(outputs, target)` takes that list and the target (B,1,H,W) float in {0,1} and returns a scalar. Anything
  else the loss needs (e.g. TSERNet's edge map) is derived from the target inside `loss`. Shared pieces
  (`bce_loss`, `ssim_loss`, `iou_loss`, all on logits) are in `deffiller.detection.losses`.
- Class attribute `preprocess: Preprocess`: the official input pipeline (train resize, random crop or None, test
  resize, mean/std, per-image divide-by-max, hflip / rotation / colour-jitter, min-max of the output, interpolation
  back to the source size). The training loop and `predict` apply it; networks never read files.
- Class attribute `train_defaults: TrainDefaults`: Table 4 of the paper (optimizer, lr, weight decay, momentum/betas,
  batch size, epochs, schedule, whether biases/BN are exempt from weight decay).

`create_detector(name)` imports `deffiller.detection.nets.<name>` on first use; `list_detectors()` lists all modules.
"""
from deffiller.detection.registry import Detector, Preprocess, TrainDefaults, create_detector, list_detectors, register_detector

__all__ = ["Detector", "Preprocess", "TrainDefaults", "create_detector", "list_detectors", "register_detector"]
