"""Table 1's priors come from `priors.source` (data), never from the profile's name."""
import pytest

from deffiller.errors import DefFillerError
from deffiller.experiments import priors
from tiny_deffiller import tiny_profile


@pytest.fixture
def dataset(tmp_path_factory, monkeypatch):
    from deffiller.data.synth import synthesize

    data = synthesize(tmp_path_factory.mktemp("synth") / "SD-saliency-900", per_class=2, seed=0)
    monkeypatch.setenv("DEFFILLER_DATASET", str(data))
    return data


def test_pretrained_source_needs_the_real_files_and_names_them(dataset, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(priors, "build_stand_ins", lambda *a: built.append(a))
    profile = tiny_profile(tmp_path, **{"paths.figures": str(tmp_path / "figures"), "paths.weights": str(tmp_path / "w"),
                                        "priors.source": "pretrained"})
    with pytest.raises(DefFillerError, match="priors.source is pretrained") as error:
        priors.run(profile)
    assert str(tmp_path / "w") in str(error.value) and not built  # the missing files named, nothing built instead


def test_stand_in_source_builds_the_miniatures_and_a_typo_is_refused(dataset, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(priors, "build_stand_ins", lambda *a: built.append(a))
    profile = tiny_profile(tmp_path, **{"paths.figures": str(tmp_path / "figures"), "paths.weights": str(tmp_path / "w")})
    priors.run(profile)
    assert len(built) == 1
    with pytest.raises(DefFillerError, match="use stand_in or pretrained"):
        priors.run(tiny_profile(tmp_path, **{"paths.figures": str(tmp_path / "f2"), "priors.source": "real"}))
