"""Calibration data: each accepted form, the held-out split, and every refusal's message."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.calibration import Preprocess, load_calibration
from modelport.errors import BadInput
from modelport.spec import TensorSpec

IMAGE = [TensorSpec("image", (1, 3, 8, 8), "float32")]


def test_npz_is_split_into_calibration_and_held_out(tmp_path):
    np.savez(tmp_path / "c.npz", image=np.random.default_rng(0).random((10, 1, 3, 8, 8), np.float32))
    calibration = load_calibration(tmp_path / "c.npz", IMAGE)
    assert (len(calibration.samples), len(calibration.held_out)) == (8, 2)
    assert calibration.origin == "data" and "8 calibrate, 2 held out" in calibration.description
    single = tmp_path / "one.npz"
    np.savez(single, image=np.zeros((1, 3, 8, 8), np.float32))
    alone = load_calibration(single, IMAGE)
    assert (len(alone.samples), alone.held_out) == (1, []) and "none left to hold out" in alone.description


def test_folder_of_npy_files(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.full((1, 3, 8, 8), i, np.float32))
    np.save(tmp_path / "stack.npy", np.zeros((2, 1, 3, 8, 8), np.float32))  # N samples in one file
    calibration = load_calibration(tmp_path, IMAGE)
    assert len(calibration.samples) + len(calibration.held_out) == 5
    with pytest.raises(BadInput, match="feeds single-input models"):
        load_calibration(tmp_path, [*IMAGE, TensorSpec("mask", (1, 8), "float32")])


def test_folder_of_images_needs_preprocess_and_follows_it(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (16, 12), (255, 0, 10 * i)).save(tmp_path / f"{i}.png")
    with pytest.raises(BadInput, match="is a folder of images") as caught:
        load_calibration(tmp_path, IMAGE)
    assert "Add --preprocess" in (caught.value.hint or "")
    spec = Preprocess.parse("scale=1/255,mean=0.5/0.5/0.5,std=0.5/0.5/0.5")
    calibration = load_calibration(tmp_path, IMAGE, spec)
    first = calibration.samples[0]["image"]
    assert first.shape == (1, 3, 8, 8) and first.dtype == np.float32  # resized to the input's 8x8, NCHW
    assert np.allclose(first[0, 0], 1.0) and np.allclose(first[0, 1], -1.0)  # red 255 -> 1, green 0 -> -1
    nhwc = load_calibration(tmp_path, [TensorSpec("image", (1, 8, 8, 3), "float32")], Preprocess.parse("resize=8x8"))
    assert nhwc.samples[0]["image"].shape == (1, 8, 8, 3)


@pytest.mark.parametrize("text, fragment", [("resize=abc", "resize"), ("layout=chw", "layout is nchw or nhwc"),
                                            ("gamma=2", "unknown key 'gamma'"), ("std=0", "std must not be 0"),
                                            ("scale", "expected key=value")])
def test_malformed_preprocess_names_the_part(text, fragment):
    with pytest.raises(BadInput, match=fragment) as caught:
        Preprocess.parse(text)
    assert "--preprocess resize=224x224" in (caught.value.hint or "")


def test_random_is_only_by_name_and_is_marked(tmp_path):
    calibration = load_calibration("random", IMAGE, random_count=4)
    assert calibration.origin == "random" and len(calibration.samples) == 4 and len(calibration.held_out) == 3
    # held-out noise is not the calibration noise
    assert not np.array_equal(calibration.samples[0]["image"], calibration.held_out[0]["image"])
    with pytest.raises(BadInput, match="does not exist"):
        load_calibration(tmp_path / "missing", IMAGE)


def test_empty_or_mixed_folders_are_refused(tmp_path):
    with pytest.raises(BadInput, match="holds no .npy files, images or test_data_set folders"):
        load_calibration(tmp_path, IMAGE)
    np.save(tmp_path / "a.npy", np.zeros((1, 3, 8, 8), np.float32))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(BadInput, match="mixes .npy files and images"):
        load_calibration(tmp_path, IMAGE)


def test_a_broken_image_is_a_clean_refusal(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadInput, match="Cannot read the image"):
        load_calibration(tmp_path, IMAGE, Preprocess())
