"""Tests for the SynthShapes teaching dataset."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from tokenfusion.data import (
    CLASS_NAMES,
    SHAPES,
    TEXTURES,
    VAL_SEED_OFFSET,
    SynthSample,
    SynthShapes,
    export_imagefolder,
    render_sample,
)
from tokenfusion.data import synthshapes

ADJECTIVES = {"checker": "checkered", "dots": "dotted", "stripes": "striped"}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
V1_DIGEST = "dde5368de420a004"


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def test_class_names_order():
    assert len(SHAPES) == 4 and len(TEXTURES) == 3
    assert len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 12
    for t, texture in enumerate(TEXTURES):
        for s, shape in enumerate(SHAPES):
            assert CLASS_NAMES[t * len(SHAPES) + s] == f"{ADJECTIVES[texture]} {shape}"
    # Sorted names: ImageFolder assigns the same indices to an exported copy.
    assert CLASS_NAMES == sorted(CLASS_NAMES)


@pytest.mark.parametrize("image_size", [32, 48, 64, 224])
def test_render_sample_types(image_size):
    sample = render_sample(0, 5, image_size)
    assert isinstance(sample, SynthSample)
    assert sample.image.shape == (image_size, image_size, 3) and sample.image.dtype == np.uint8
    assert sample.image.flags.c_contiguous
    assert sample.mask.shape == (image_size, image_size) and sample.mask.dtype == bool
    assert sample.mask.any()
    assert sample.image.std() > 10  # not a flat image


def test_determinism():
    a, b = render_sample(3, 7), render_sample(3, 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.label, a.shape, a.texture) == (b.label, b.shape, b.texture)
    assert not np.array_equal(a.image, render_sample(3, 8).image)
    assert not np.array_equal(a.image, render_sample(3, 19).image)  # same label, next cycle
    assert not np.array_equal(a.image, render_sample(4, 7).image)  # other seed


def test_every_class_reachable_and_labels_match():
    seen = set()
    for index in range(24):
        sample = render_sample(1, index)
        assert sample.label == index % 12
        assert CLASS_NAMES[sample.label] == f"{ADJECTIVES[sample.texture]} {sample.shape}"
        assert sample.label == TEXTURES.index(sample.texture) * len(SHAPES) + SHAPES.index(sample.shape)
        seen.add(sample.label)
    assert seen == set(range(12))


@pytest.mark.parametrize("version, image_size, area, extent", [
    # v1: circumradius 33-47% of the side, from a small triangle (14% of the image) to a large circle (69%).
    (1, 48, (0.13, 0.70), (0.45, 0.96)),
    # v2: circumradius 18-32%, from 4% to 33% of the image.
    (2, 64, (0.035, 0.33), (0.25, 0.66)),
])
def test_mask_geometry(version, image_size, area, extent):
    for index in range(36):
        mask = render_sample(2, index, image_size, version=version).mask
        # Fully inside the image: the object never touches the border.
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        assert area[0] <= mask.mean() <= area[1]
        ys, xs = np.nonzero(mask)
        side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / image_size
        assert extent[0] <= side <= extent[1]
        # One connected-ish object: its bounding box is well filled.
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert mask.sum() >= 0.3 * box


def test_v2_objects_leave_the_centre_and_move_about():
    """No fixed map can localise v2's objects: the centre lies in the object in under half the images,
    and object centres spread over the image (v1's always covered the centre)."""
    samples = [render_sample(12345, i) for i in range(400)]
    centre = np.mean([s.mask[31:33, 31:33].any() for s in samples])
    assert centre <= 0.5
    assert np.mean([render_sample(12345, i, version=1).mask[23:25, 23:25].any() for i in range(100)]) == 1.0
    centres = np.array([np.argwhere(s.mask).mean(0) for s in samples]) / 64
    assert (centres.min(0) < 0.3).all() and (centres.max(0) > 0.7).all()


def test_v1_is_unchanged():
    """v1 renders the images the first teaching models trained on, bit for bit."""
    import hashlib

    digest = hashlib.sha256()
    for i in range(50):
        digest.update(render_sample(0, i, 48, version=1).image.tobytes())
    assert digest.hexdigest()[:16] == V1_DIGEST


def test_cue_conflict_split():
    """Decoys carry another class's shape and another texture; the object's own cues are the label's."""
    from tokenfusion.data import SHAPES, conflict_reliance

    samples = [render_sample(7, i, conflict=True) for i in range(48)]
    for s in samples:
        assert s.decoy_label is not None and s.decoy_label != s.label
        assert s.decoy_label % len(SHAPES) != s.label % len(SHAPES)  # another shape
        assert s.decoy_label // len(SHAPES) != s.label // len(SHAPES)  # and another texture
    assert render_sample(7, 0).decoy_label is None
    labels, decoys = [s.label for s in samples], [s.decoy_label for s in samples]
    assert conflict_reliance(labels, labels, decoys) == {
        "top1": 100.0, "shape": 100.0, "texture": 100.0, "decoy_shape": 0.0, "decoy_texture": 0.0}
    assert conflict_reliance(decoys, labels, decoys)["decoy_texture"] == 100.0
    with pytest.raises(ValueError, match="exists from SynthShapes v2"):
        render_sample(0, 0, version=1, conflict=True)
    with pytest.raises(ValueError, match="Unknown SynthShapes version"):
        SynthShapes(3, version=3)


def test_object_differs_from_background():
    for index in range(48):
        sample = render_sample(5, index)
        image = sample.image.astype(np.float32) / 255
        mask = sample.mask
        # Two-colour texture with luminance contrast inside the mask.
        assert (image @ LUMA)[mask].std() > 0.1
        # Object colours are far from the surrounding background.
        ring = _dilate(mask, 3) & ~_dilate(mask, 1)
        background = np.median(image[ring], axis=0)
        assert np.median(np.linalg.norm(image[mask] - background, axis=-1)) > 0.2


@pytest.mark.parametrize("image_size", [48, 64, 224])
def test_dataset_items(image_size):
    dataset = SynthShapes(13, image_size=image_size, seed=1)
    assert len(dataset) == 13
    assert dataset.classes == CLASS_NAMES
    assert dataset.class_to_idx == {name: i for i, name in enumerate(CLASS_NAMES)}
    image, label = dataset[12]
    assert isinstance(image, torch.Tensor) and isinstance(label, int)
    assert image.shape == (3, image_size, image_size) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    sample = dataset.sample(12)
    assert label == sample.label == 0
    expected = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image.as_subclass(torch.Tensor), expected)
    torch.testing.assert_close(dataset[-1][0], image)


def test_dataset_transform_and_loader():
    dataset = SynthShapes(4, seed=2, transform=lambda x: x[:, :32, :32] * 2)
    image, _ = dataset[0]
    assert image.shape == (3, 32, 32) and image.max() > 1.0
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 32, 32)
    assert labels.tolist() == [0, 1, 2, 3]


def test_index_errors():
    dataset = SynthShapes(3)
    for i in (3, -4, 100):
        with pytest.raises(IndexError, match="out of range"):
            dataset[i]
    with pytest.raises(IndexError):
        dataset.sample(3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be >= 32, got 16"):
        render_sample(0, 0, 16)
    with pytest.raises(ValueError, match="image_size must be >= 32, got 16"):
        SynthShapes(10, image_size=16)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        SynthShapes(0)
    with pytest.raises(ValueError, match="seed must be in"):
        render_sample(-1, 0)
    with pytest.raises(ValueError, match="seed must be in"):
        SynthShapes(5, seed=2**32)
    with pytest.raises(ValueError, match="index must be >= 0, got -1"):
        render_sample(0, -1)
    with pytest.raises(ValueError, match="num_train must be >= 0, got -1"):
        export_imagefolder("unused", num_train=-1, num_val=0)
    with pytest.raises(TypeError, match="image_size must be an int"):
        render_sample(0, 0, 48.0)


def test_export_imagefolder(tmp_path):
    root = export_imagefolder(tmp_path / "synth", num_train=24, num_val=12, seed=3, progress=False)
    assert root == tmp_path / "synth"
    for split, count, seed in (("train", 24, 3), ("val", 12, 3 + VAL_SEED_OFFSET)):
        folder = ImageFolder(str(root / split))
        assert len(folder) == count
        assert folder.classes == CLASS_NAMES
        assert folder.class_to_idx == SynthShapes(1).class_to_idx
        for path, target in folder.samples:
            path = Path(path)
            sample = render_sample(seed, int(path.stem))
            assert target == sample.label
            np.testing.assert_array_equal(np.asarray(Image.open(path)), sample.image)
            mask_path = root / f"{split}_masks" / path.parent.name / path.name
            np.testing.assert_array_equal(np.asarray(Image.open(mask_path)) > 0, sample.mask)
        # Masks sit beside the split, not inside it.
        assert len(ImageFolder(str(root / f"{split}_masks"))) == count


def test_cli(tmp_path):
    preview = tmp_path / "preview.png"
    synthshapes.main(["--preview", str(preview), "--size", "32"])
    width, height = Image.open(preview).size
    assert width == 4 * 192 and height > 3 * 192
    synthshapes.main(["--out", str(tmp_path / "out"), "--train", "12", "--val", "1", "--no-progress"])
    assert len(ImageFolder(str(tmp_path / "out" / "train"))) == 12
    with pytest.raises(SystemExit):
        synthshapes.main(["--out", str(tmp_path / "bad"), "--train", "1", "--size", "16"])


def test_cue_accuracy_separates_shape_from_texture():
    from tokenfusion.data import SHAPES, cue_accuracy

    confusion = np.zeros((12, 12), dtype=int)
    for label in range(12):  # right texture, wrong shape (the next one along), ten images each
        texture, shape = divmod(label, len(SHAPES))
        confusion[label, texture * len(SHAPES) + (shape + 1) % len(SHAPES)] = 10
    assert cue_accuracy(confusion) == {"shape": 0.0, "texture": 100.0}
    confusion[0, 0] = 30  # add 30 right answers to 120 wrong-shape ones
    assert cue_accuracy(confusion) == {"shape": 20.0, "texture": 100.0}
    with pytest.raises(ValueError, match="12x12"):
        cue_accuracy(np.ones((3, 3)))
