"""Classifier file names follow checkpoint.checkpoint_paths: a stem keeps every dot in its name."""
import torch

from seqdiff_kit.classifier import DigitClassifier, load_classifier, save_classifier


def test_stem_with_a_dot_round_trips(tmp_path):
    torch.manual_seed(0)
    m = DigitClassifier(channels=2, feature_dim=4).eval()
    stem = save_classifier(m, tmp_path / "runs" / "clf.v2")
    assert stem == tmp_path / "runs" / "clf.v2"
    assert sorted(f.name for f in (tmp_path / "runs").iterdir()) == ["clf.v2.json", "clf.v2.safetensors"]
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    for p in (stem, tmp_path / "runs" / "clf.v2.json", tmp_path / "runs" / "clf.v2.safetensors"):
        torch.testing.assert_close(load_classifier(p)(x), m(x))
