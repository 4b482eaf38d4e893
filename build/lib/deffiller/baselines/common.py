"""What every baseline's training shares: the pairs `deffiller train` would read, and the classes to train."""
from __future__ import annotations

from deffiller.config import Profile
from deffiller.data.layout import Pair
from deffiller.errors import DefFillerError
from deffiller.data.splits import training_pairs


def training_set(profile: Profile, data=None, train_manifest=None, classes=None) -> tuple[list[Pair], str, list[str]]:
    """(pairs, description, classes): the pairs of `data` or the train rows of a manifest (`train_manifest`, or `data`
    when it is a .csv; default: the profile's dataset), and `classes` (default: every class among them), checked
    against them."""
    pairs, described = training_pairs(profile, data, train_manifest)
    found = sorted({p.label for p in pairs})
    unknown = sorted(set(classes or ()) - set(found))
    if unknown:
        raise DefFillerError(f"class(es) {unknown} not in the training data ({described}); it has {found}")
    return pairs, described, list(classes or found)
