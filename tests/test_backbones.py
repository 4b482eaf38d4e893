"""ImageNet backbones the field's way, offline: state dicts written by torchvision's and timm's own model classes
(random weights) load into CSEPNet's VGG16-bn, TSERNet's ResNet-34 and the mask encoder's ConvNeXt-T with strict key
accounting, and our backbones then compute the library models' features; a missing file names itself and the
command that fetches it; summaries and provenance record the file's sha256."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.detection.registry import create_detector
from deffiller.detection.train import DetectConfig, train_detector
from deffiller.errors import DefFillerError
from deffiller.experiments.data import backbone_weights
from deffiller.detection.nets._backbone import load_torchvision_backbone
from deffiller.models.backbones import BackboneFile, timm_file, torchvision_file, torchvision_model
from deffiller.training.parts import build_parts
from deffiller.models.config import ModelConfig
from deffiller.models.convert import save_sd_folder, sd_unet_like
from deffiller.models.unet import MaskEncoder
from deffiller.utils.io import sha256_file


def _randomised(model: torch.nn.Module, seed: int, skip: tuple[str, ...] = ()) -> torch.nn.Module:
    """The library model with random weights and BN statistics (so a stat that is not copied would show); the
    entries named in `skip` (a classifier our networks do not use) keep their initialisation."""
    torch.manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not name.startswith(skip):
            tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    library = _randomised(torchvision.models.vgg16_bn(weights=None), 0, skip=("classifier.",))
    path = tmp_path_factory.mktemp("tv") / "vgg16_bn.pth"
    torch.save(library.state_dict(), path)
    return library, path


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    library = _randomised(torchvision.models.resnet34(weights=None), 1)
    path = tmp_path_factory.mktemp("tv") / "resnet34.pth"
    torch.save(library.state_dict(), path)
    return library, path


@pytest.fixture(scope="module")
def convnext_file(tmp_path_factory):
    library = _randomised(timm.create_model("convnext_tiny", pretrained=False), 2)
    path = tmp_path_factory.mktemp("timm") / "convnext_tiny.pth"
    torch.save(library.state_dict(), path)
    return library, path


def test_csepnet_vgg16_bn_features_equal_torchvision(vgg_file):
    library, path = vgg_file
    net = create_detector("csepnet", backbone_weights=str(path)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.encoder(x), library.features[:43](x))


def test_tsernet_resnet34_features_equal_torchvision(resnet_file):
    library, path = resnet_file
    net = create_detector("tsernet", backbone_weights=str(path)).eval()
    h = torch.randn(1, 64, 16, 16)  # TSERNet replaces the stem: layer1-4 are the ImageNet part
    with torch.no_grad():
        ours = net.encoder4(net.encoder3(net.encoder2(net.encoder1(h))))
        theirs = library.layer4(library.layer3(library.layer2(library.layer1(h))))
    assert torch.equal(ours, theirs)


def test_mask_encoder_convnext_features_equal_timm(convnext_file):
    library, path = convnext_file
    encoder = MaskEncoder(4, 32, 64, (3, 3, 9, 3), (96, 192, 384, 768)).eval()
    encoder.load_backbone(BackboneFile(path, "local file"), "convnext_tiny.fb_in1k")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(encoder.backbone.forward_features(x), library.forward_features(x))


def test_strict_key_accounting(resnet_file, convnext_file, tmp_path):
    """(ResNet-34 files: the same code as VGG16-bn's, a sixth of the size.)"""
    library, _ = resnet_file
    state = library.state_dict()
    cases = {"extra": ({**state, "layer9.weight": torch.zeros(1)}, r"does not hold resnet34 weights: 1 unknown.*layer9"),
             "missing": ({k: v for k, v in state.items() if k != "layer4.2.bn2.running_var"},
                         r"1 missing.*layer4\.2\.bn2\.running_var"),
             "gray": ({**state, "conv1.weight": torch.zeros(64, 1, 7, 7)}, r"wrong shape.*conv1\.weight")}
    for name, (bad, message) in cases.items():
        torch.save(bad, tmp_path / f"{name}.pth")
        with pytest.raises(DefFillerError, match=message):
            torchvision_model("resnet34", tmp_path / f"{name}.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DefFillerError, match="cannot read backbone weights.*garbage.pth"):
        torchvision_model("resnet34", tmp_path / "garbage.pth")
    torch.save({"model": "resnet"}, tmp_path / "not_a_state_dict.pth")
    with pytest.raises(DefFillerError, match="not a state dict"):
        torchvision_model("resnet34", tmp_path / "not_a_state_dict.pth")
    with pytest.raises(DefFillerError, match="backbone weights file .*absent.pth does not exist"):
        load_torchvision_backbone({}, tmp_path / "absent.pth", "resnet34", ())
    # every library weight used or named as ignored, every one of ours filled
    with pytest.raises(DefFillerError, match=r"weights would be dropped \(e\.g\. \['bn1\.bias'"):
        load_torchvision_backbone({"layer1": torchvision.models.resnet34().layer1}, resnet_file[1], "resnet34", ("fc.",))
    with pytest.raises(DefFillerError, match=r"the weights of 'layer2' do not fit"):
        load_torchvision_backbone({"layer2": torchvision.models.resnet34().layer3}, resnet_file[1], "resnet34",
                                  ("conv1.", "bn1.", "fc.", "layer1.", "layer3.", "layer4."))
    # ConvNeXt: a checkpoint of another size is refused by timm's strict load, as our error
    small = timm.create_model("convnext_nano", pretrained=False)
    torch.save(small.state_dict(), tmp_path / "nano.pth")
    encoder = MaskEncoder(4, 32, 64, (3, 3, 9, 3), (96, 192, 384, 768))
    with pytest.raises(DefFillerError, match="does not hold convnext_tiny.fb_in1k weights"):
        encoder.load_backbone(BackboneFile(tmp_path / "nano.pth", "local file"), "convnext_tiny.fb_in1k")
    # our architecture must match the library's: a smaller ConvNeXt cannot take ConvNeXt-T weights
    _, tiny_file = convnext_file
    with pytest.raises(DefFillerError, match="do not fit our network"):
        MaskEncoder(4, 32, 64, (1, 1, 1, 1), (8, 16, 32, 64)).load_backbone(BackboneFile(tiny_file, "local"),
                                                                            "convnext_tiny.fb_in1k")


def test_missing_files_name_themselves_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(DefFillerError) as error:
        torchvision_file("vgg16_bn", "IMAGENET1K_V1")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16_bn-6c64b313.pth") in message
    assert "torchvision.models.vgg16_bn(weights='IMAGENET1K_V1')" in message
    with pytest.raises(DefFillerError, match=r"nowhere\.pth: backbone weights file not found.*IMAGENET1K_V1"):
        torchvision_file("resnet34", str(tmp_path / "nowhere.pth"))

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(DefFillerError) as error:
        timm_file("convnext_tiny.fb_in1k")
    message = str(error.value)
    assert str(tmp_path / "hf" / "models--timm--convnext_tiny.fb_in1k") in message
    assert "timm.create_model('convnext_tiny.fb_in1k', pretrained=True)" in message
    with pytest.raises(DefFillerError, match="not a timm pretrained model name"):
        timm_file("convnext_giant.nowhere")


def test_a_named_weights_file_in_torch_hubs_cache_is_used(resnet_file, tmp_path, monkeypatch):
    _, path = resnet_file
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    cached.symlink_to(path)
    found = torchvision_file("resnet34", "IMAGENET1K_V1")
    assert found.path == cached and found.origin == "torchvision resnet34 IMAGENET1K_V1"
    assert found.describe().endswith(f"sha256:{sha256_file(path)}")


def test_detector_summary_and_provenance_record_the_backbone_sha256(vgg_file, synth_dataset, tmp_path):
    from deffiller.data.layout import load_pairs

    _, path = vgg_file
    cfg = DetectConfig(epochs=1, max_steps=1, batch_size=2, input_size=32, backbone_weights={"csepnet": str(path)})
    train_detector("csepnet", load_pairs(synth_dataset)[:2], tmp_path / "run", cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backbone_sha256"] == sha256_file(path) and str(path) in summary["backbone"]
    with pytest.raises(DefFillerError, match="minet has no pretrained backbone"):
        train_detector("minet", load_pairs(synth_dataset)[:2], tmp_path / "m", DetectConfig(backbone_weights={"minet": str(path)}))

    profile = tiny_profile(tmp_path, **{"detect.backbone_weights": {"csepnet": str(path), "tsernet": "IMAGENET1K_V1"}})
    recorded = backbone_weights(profile)
    assert recorded["csepnet backbone"].endswith(f"sha256:{sha256_file(path)}")
    assert recorded["tsernet backbone"].startswith("not available yet") or "sha256:" in recorded["tsernet backbone"]


def test_init_sd_starts_the_mask_encoder_from_the_imagenet_convnext(convnext_file, tmp_path):
    library, path = convnext_file
    weights = tmp_path / "weights"
    profile = tiny_profile(tmp_path, **{
        "paths.weights": str(weights), "model.sd_weights": "stable-diffusion-v1-4",
        "model.convnext_depths": [3, 3, 9, 3], "model.convnext_dims": [96, 192, 384, 768],
        "model.convnext_weights": "convnext_tiny.fb_in1k", "model.convnext_weights_file": str(path)})
    prior = tiny_parts(profile, seed=1)
    cfg = profile.section(ModelConfig)
    save_sd_folder(sd_unet_like(cfg, profile.data.image_size, factor=4), prior.vae, prior.text_encoder,
                   prior.tokenizer, weights / "stable-diffusion-v1-4")
    parts = build_parts(profile, "sd")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(parts.unet.position_net.backbone.eval().forward_features(x), library.forward_features(x))
    assert parts.provenance["mask_encoder_convnext"].endswith(f"sha256:{sha256_file(path)}")
