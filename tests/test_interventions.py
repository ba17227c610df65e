"""Token interventions: each does to one kind of token what its name says, and nothing to the other; tokens
taken away where they are read go at the places the structure declares, and a region takes the cells under it."""
import pytest
import torch

from tokenfusion.interventions import (
    INTERVENTIONS, ablate_from, ablate_region, cells_under, dataset_means, describe, intervene, places,
)
from tokenfusion.models import create


@pytest.fixture(scope="module")
def early():
    torch.manual_seed(0)
    return create("early", "tiny").eval()


def _tokens(model, kind, x):
    """The ``kind`` tokens the model makes for ``x`` ``(B, n, D)``, as the blocks receive them."""
    seen = []
    module = model.get_submodule(model.structure.token_modules[kind][0])
    handle = module.register_forward_hook(lambda m, i, out: seen.append(out[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("how", INTERVENTIONS)
def test_each_intervention_changes_its_kind_only(early, how):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    means = dataset_means(early, torch.randn(4, 3, 64, 64), "cnn")
    before = {kind: _tokens(early, kind, x) for kind in ("cnn", "patch")}
    with intervene(early, "cnn", how, means=means, generator=torch.Generator().manual_seed(0)):
        after = {kind: _tokens(early, kind, x) for kind in ("cnn", "patch")}
    torch.testing.assert_close(after["patch"], before["patch"])
    assert not torch.allclose(after["cnn"], before["cnn"])
    position = early.cnn_tokens.pos_embed((8, 8))
    contents, new = before["cnn"] - position, after["cnn"] - position
    if how == "zero":
        assert after["cnn"].abs().max() == 0
    elif how == "dataset_mean":
        torch.testing.assert_close(after["cnn"][0], means[0])
        torch.testing.assert_close(after["cnn"][1], means[0])
    elif how == "contents_averaged":  # every token: the image's mean content at its own position
        torch.testing.assert_close(new, contents.mean(1, keepdim=True).expand_as(new))
    else:  # the same contents, other places
        torch.testing.assert_close(new.sort(1).values, contents.sort(1).values)
        assert not torch.allclose(new, contents)
    assert early.cnn_tokens._forward_hooks == {}  # removed on exit


def test_interventions_refuse_what_they_cannot_do(early):
    with pytest.raises(ValueError, match="Unknown intervention"):
        with intervene(early, "cnn", "blur"):
            pass
    with pytest.raises(ValueError, match="dataset_mean needs"):
        with intervene(early, "cnn", "dataset_mean"):
            pass
    with pytest.raises(ValueError, match="no 'cnn' tokens"):
        with intervene(create("vit", "tiny"), "cnn", "zero"):
            pass
    assert describe("cnn", "zero") == "without CNN tokens (zeroed)"
    assert describe("patch", "layout_shuffled") == "patch tokens' layout shuffled"


def test_kind_dropout_zeroes_one_kind_per_training_image():
    """In training, an image that loses a kind sees exactly what ``zero`` shows it in evaluation."""
    torch.manual_seed(0)
    model = create("early", "tiny", kind_drop_rate=1.0).train()
    torch.manual_seed(3)
    masks = model.kind_masks(1000, torch.device("cpu"))
    cnn, patch = masks["cnn"].flatten(), masks["patch"].flatten()
    assert ((cnn + patch) == 1).all()  # never both lost, never both kept at rate 1
    assert 0.45 < cnn.mean() < 0.55
    assert model.eval().kind_masks(4, torch.device("cpu")) is None
    assert create("early", "tiny").train().kind_masks(4, torch.device("cpu")) is None


@pytest.mark.parametrize("kind,other", [("cnn", "patch"), ("patch", "cnn")])
def test_kind_dropout_of_one_kind_takes_that_kind_alone(kind: str, other: str) -> None:
    model = create("early", "tiny", kind_drop_rate=0.4, kind_drop_kinds=kind).train()
    torch.manual_seed(3)
    masks = model.kind_masks(2000, torch.device("cpu"))
    assert masks[other].eq(1).all()  # the other kind is never lost
    assert 0.36 < 1 - masks[kind].mean() < 0.44  # this kind on a share p of the images


def test_a_region_takes_the_patches_it_overlaps_and_the_cnn_tokens_whose_centre_it_holds() -> None:
    region = (0.3, 0.0, 0.6, 1.0)  # on a 4-wide grid: columns [0, .25), [.25, .5), [.5, .75), [.75, 1)
    assert cells_under(region, "patch", (4, 4))[0].tolist() == [False, True, True, False]
    assert cells_under(region, "cnn", (4, 4))[0].tolist() == [False, True, False, False]  # centres .375 in, .625 out
    assert cells_under((0, 0, 1, 1), "cnn", (3, 5)).all()
    assert not cells_under((0.2, 0.5, 0.8, 0.5), "patch", (4, 4)).any()  # no height: nothing


def test_places_follow_each_kind_in_forward_order() -> None:
    structure = create("late", "tiny").structure
    assert places(structure, "cnn") == [f"cnn_blocks.{i}" for i in range(4)] + ["fusion_blocks.0"]
    assert places(structure, None) == [f"cnn_blocks.{i} + patch_blocks.{i}" for i in range(4)] + ["fusion_blocks.0"]


def test_the_whole_image_as_a_region_is_the_kind_removed(early) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, trace = early(x, trace=True)
        for kind in ("cnn", "patch"):
            with ablate_from(early, trace.layouts, kind, 2, "zero"):
                whole = early(x)
            with ablate_region(early, trace.layouts, (0, 0, 1, 1), (kind,), 2, "zero") as where:
                assert where == places(early.structure, kind)[1:]
                torch.testing.assert_close(early(x), whole)
