import pytest
import torch

from tokenfusion.explain import ExplainError, branch_ablation, fusion_weights, gates
from tokenfusion.interventions import intervene


@pytest.mark.parametrize("arch", ["early", "late"])
def test_attention_shares_add_up(arch, tiny, image):
    fw = fusion_weights(tiny(arch), image(seed=1).expand(2, -1, -1, -1))
    total = sum(fw.cls_share.values())
    assert total.shape[0] == 2 and len(fw.layers) == total.shape[1]
    torch.testing.assert_close(total, torch.ones_like(total))
    assert fw.gates is None


def test_layerwise_gates_and_update_ratio(tiny, x):
    model = tiny("layerwise")
    fw = fusion_weights(model, x)
    torch.testing.assert_close(fw.gates, gates(model))
    assert (fw.gates == 0).all() and (fw.update_ratio == 0).all() and fw.update_ratio.shape == (1, 4)


def test_fusion_weights_need_a_fusion_model(tiny, x):
    with pytest.raises(ExplainError, match="fusion model"):
        fusion_weights(tiny("vit"), x)
    with pytest.raises(ExplainError, match="gates"):
        gates(tiny("early"))


def test_closed_gates_make_cnn_ablation_a_no_op(tiny, image, hook_count):
    model = tiny("layerwise")
    hooks = hook_count(model)
    result = branch_ablation(model, image(seed=2).expand(3, -1, -1, -1))
    assert (result.delta["cnn"] == 0).all()
    assert result.delta["patch"].abs().max() > 0  # patch ablation does change the logit
    assert hook_count(model) == hooks


def test_open_gates_make_cnn_ablation_matter(tiny, x):
    model = tiny("layerwise")
    with torch.no_grad():
        for block in model.cross_blocks:
            block.gate.fill_(1.0)
    try:
        assert branch_ablation(model, x).delta["cnn"].abs().max() > 0
    finally:
        with torch.no_grad():
            for block in model.cross_blocks:
                block.gate.zero_()


@pytest.mark.parametrize("arch", ["early", "late"])
def test_ablation_is_the_forward_without_the_kind(arch, tiny, x):
    model = tiny(arch)
    result = branch_ablation(model, x, target=3)
    assert result.target.tolist() == [3] and result.how == "zero"
    torch.testing.assert_close(result.logit, model(x)[:, 3])
    with intervene(model, "patch", "zero") as n:
        assert n == 1
        torch.testing.assert_close(result.ablated["patch"], model(x)[:, 3])
    assert not torch.allclose(result.ablated["patch"], result.logit)


def test_branch_ablation_refuses_what_it_cannot_do(tiny, x, hook_count):
    model = tiny("early")
    hooks = hook_count(model)
    with pytest.raises(ExplainError, match="Unknown branch ablation"):
        branch_ablation(model, x, how="dataset_mean")  # needs training images
    assert hook_count(model) == hooks
    with pytest.raises(ExplainError, match="both CNN and patch"):
        branch_ablation(tiny("vit"), x)
