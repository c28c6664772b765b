"""Data of any shape and dtype (the bring-your-own-data contract, sweeps/core/data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweeps.core.data import DataError, load_dataset


def _npz(tmp_path: Path, name: str = "a.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_images_keep_their_shape_and_are_standardized_per_pixel(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (50, 6, 5, 3)).astype(np.float32)
    d = load_dataset(path=_npz(tmp_path, x=x, y=np.arange(50) % 4), val_fraction=0.2)
    assert d.x_train.shape == (40, 6, 5, 3) and d.x_train.dtype == np.float32
    assert d.input_shape == (6, 5, 3) and d.image_shape == (6, 5, 3) and d.n_features == 90
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0, atol=1e-5)  # per pixel and channel
    np.testing.assert_allclose(d.x_train.std(axis=0), 1, atol=1e-4)
    assert d.num_classes == 4


def test_integer_tokens_are_never_standardized(tmp_path):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 50, (40, 7))
    d = load_dataset(path=_npz(tmp_path, x=tokens, y=np.roll(tokens, -1, axis=1)))
    assert d.x_train.dtype == np.int32 and d.y_train.shape[1:] == (7,)
    assert d.task == "classification" and d.num_classes == int(tokens.max()) + 1
    rows = np.concatenate([d.x_train, d.x_val])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, tokens))  # the ids as given
    assert d.vocab_size == int(tokens.max()) + 1


def test_multi_output_regression_targets(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 3))
    d = load_dataset(path=_npz(tmp_path, x=x, y=y), task="regression")
    assert d.y_train.shape[1:] == (3,) and d.n_targets == 3


def test_a_split_given_by_the_user_is_kept(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.normal(size=(20, 3)), "y_train": np.arange(20) % 2,
        "x_val": rng.normal(size=(8, 3)) + 100.0, "y_val": np.arange(8) % 2,
    }  # fmt: skip
    d = load_dataset(path=_npz(tmp_path, **arrays), val_fraction=0.5)
    assert (d.n_train, d.n_val) == (20, 8)  # val_fraction does not apply
    # standardized with the training statistics: the shifted validation set stays far off
    assert d.x_val.mean() > 10


def test_a_split_needs_all_four_arrays(tmp_path):
    with pytest.raises(DataError, match="missing: x_val, y_val"):
        load_dataset(path=_npz(tmp_path, x_train=np.zeros((5, 2)), y_train=np.zeros(5)))


def test_text_windows_are_next_token_pairs_with_a_held_out_tail(tmp_path):
    corpus = "".join(chr(97 + (i * 7) % 26) for i in range(2000))
    (tmp_path / "c.txt").write_text(corpus)
    d = load_dataset(text=tmp_path / "c.txt", block_size=16, val_fraction=0.1)
    vocab = d.vocabulary
    assert vocab == tuple(sorted(set(corpus))) and d.num_classes == len(vocab)
    decode = lambda row: "".join(vocab[i] for i in row)  # noqa: E731
    np.testing.assert_array_equal(d.x_train[:, 1:], d.y_train[:, :-1])  # y is x shifted by one
    assert decode(d.x_train[0]) == corpus[:16]
    n = (len(corpus) - 1) // 16
    assert d.n_val == round(0.1 * n) and d.n_train == n - d.n_val
    assert decode(d.x_val[-1]) == corpus[(n - 1) * 16 : n * 16]  # the corpus's tail


def test_pydoc_topics_ship_with_python():
    d = load_dataset(name="pydoc_topics", block_size=32)
    assert d.x_train.dtype == np.int32 and d.input_shape == (32,)
    assert d.n_train > 1000 and "statement" in "".join(d.vocabulary[i] for i in d.x_train[0])


@pytest.mark.parametrize(
    ("content", "phrase"),
    [(b"", "too short"), (b"\x00\x01binary", "binary file"), (b"\xff\xfe\xfa", "not UTF-8")],
)
def test_bad_text_files(tmp_path, content, phrase):
    (tmp_path / "t.txt").write_bytes(content)
    with pytest.raises(DataError, match=phrase) as err:
        load_dataset(text=tmp_path / "t.txt", block_size=8)
    assert err.value.field == "data.text"


def test_arrays_from_a_loader_or_from_python():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 2, 3)).astype(np.float32), np.arange(40) % 3
    d = load_dataset(arrays={"x": x, "y": y}, val_fraction=0.25)
    assert d.input_shape == (2, 3) and (d.n_train, d.n_val) == (30, 10)
    with pytest.raises(DataError, match="no array 'x'") as err:
        load_dataset(arrays={"inputs": x, "y": y})
    assert err.value.field == "data.import"
