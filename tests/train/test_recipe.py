"""Recipe options reach the model: the command line's win over the preset's."""
from tokenfusion.checkpoint import load_checkpoint
from train.presets import resolve_preset

from .conftest import QUICK, run_train


def test_command_line_options_reach_the_model_and_win_over_the_preset(tmp_path):
    run_train(*QUICK, "--epochs", "1", "--max-steps", "1", "--patch-size", "4", "--pos-embed", "sincos", "--weight-init", "xavier",
              "--kind-drop", "0.3", "--kind-drop-kinds", "cnn", "--lr", "3e-4",
              "--output-dir", str(tmp_path))
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert (ckpt.config.img_size, ckpt.config.patch_size) == (32, 4)
    assert ckpt.model.patch_tokens.pos_embed.grid == (8, 8)
    assert ckpt.config.pos_embed == ckpt.model.patch_tokens.pos_embed.kind == "sincos"
    assert (ckpt.config.weight_init, ckpt.config.kind_drop_rate, ckpt.config.kind_drop_kinds) == ("xavier", 0.3, "cnn")
    preset = resolve_preset("synthshapes-tiny", "vit")
    assert ckpt.training["peak_lr"] == 3e-4 * ckpt.training["global_batch"] / preset["lr_batch"]
