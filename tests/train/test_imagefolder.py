"""The ImageNet path end to end on a tiny ImageFolder, and plain errors for bad data folders."""
import numpy as np
import pytest
from PIL import Image

from tokenfusion.checkpoint import load_checkpoint

from .conftest import run_train


def _folder(root, classes=("ant", "bee"), per_class=3, size=224, split=("train", "val")):
    rng = np.random.default_rng(0)
    for s in split:
        for c in classes:
            (root / s / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / s / c / f"{i}.jpg")
    return root


def test_small_fusion_model_trains_two_steps_on_imagefolder(tmp_path):
    data = _folder(tmp_path / "data")
    (data / "train" / "ant" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (data / "train" / "bee" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    result = run_train("--arch", "early", "--preset", "imagenet-small", "--data-path", str(data), "--batch-size", "2",
                       "--epochs", "1", "--max-steps", "2", "--workers", "0", "--threads", "2", "--no-progress",
                       "--output-dir", str(out))
    assert "skipped 1 files that are empty or not images" in result.stderr
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved.resume["state"]["global_step"] == 2
    assert saved.class_names == ["ant", "bee"]
    assert (saved.config.arch, saved.config.size, saved.config.img_size) == ("early", "small", 224)
    assert saved.training["ema"] is True  # the ImageNet recipe keeps an EMA of the weights


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: (root / "train").mkdir(parents=True), "Couldn't find any class folder"),
    (lambda root: _folder(root, split=("train",)), "val does not exist"),
])
def test_bad_data_folder_gives_a_plain_error(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    result = run_train("--arch", "vit", "--preset", "imagenet-small", "--data-path", str(root), "--no-progress",
                       "--output-dir", str(tmp_path / "run"), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_preset_lists_the_known_ones(tmp_path):
    result = run_train("--arch", "vit", "--preset", "imagenet-huge", "--output-dir", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "Unknown preset 'imagenet-huge'" in result.stderr and "synthshapes-tiny" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_image_that_fails_to_decode_is_replaced_by_the_next_with_a_warning(tmp_path):
    from tokenfusion.data.imagefolder import open_split

    data = _folder(tmp_path / "data", per_class=2, size=16, split=("train",))
    (data / "train" / "ant" / "0.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")  # non-empty: kept at scan
    dataset = open_split(data, "train")
    assert len(dataset) == 4
    with pytest.warns(UserWarning, match=r"Skipping unreadable image .*ant/0\.jpg"):
        image, label = dataset[0]
    next_image, next_label = dataset[1]
    assert (image.tobytes(), label) == (next_image.tobytes(), next_label)
    assert dataset.num_unreadable == 1
