"""Loading, checking, splitting and storing datasets."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.data import (
    load_dataset,
    read_dataset,
    read_splits,
    split_masks,
    write_dataset,
    write_splits,
)
from poisonlab.errors import PoisonlabError


def test_iris_loads_with_class_names():
    dataset, input_hash = load_dataset("sklearn:iris")
    assert dataset.X.shape == (150, 4)
    assert dataset.class_names == ["setosa", "versicolor", "virginica"]
    assert np.bincount(dataset.y).tolist() == [50, 50, 50]
    assert len(input_hash) == 64


def test_csv_with_string_labels_and_any_label_column(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,kind\n1,2,red\n2,3,blue\n3,1,red\n4,4,blue\n")
    before = path.read_bytes()
    dataset, _ = load_dataset(str(path), "kind")
    assert dataset.class_names == ["blue", "red"]
    assert dataset.feature_names == ["a", "b"]
    assert path.read_bytes() == before


def test_misspelled_label_column_suggests_the_right_one(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,species\n1,2,x\n2,3,y\n")
    with pytest.raises(PoisonlabError, match='did you mean "species"'):
        load_dataset(str(path), "spcies")


def test_split_is_stratified_deterministic_and_differs_by_trial():
    dataset, _ = load_dataset("sklearn:iris")
    masks = split_masks(dataset.y, 0.2, seed=42, trials=3)
    assert masks.shape == (3, 150)
    assert (masks.sum(axis=1) == 30).all()
    for mask in masks:
        assert np.bincount(dataset.y[mask]).tolist() == [10, 10, 10]
    assert (split_masks(dataset.y, 0.2, seed=42, trials=3) == masks).all()
    assert not (masks[0] == masks[1]).all()
    assert not (split_masks(dataset.y, 0.2, seed=43, trials=1)[0] == masks[0]).all()


def test_parquet_round_trip_keeps_values_and_names(tmp_path):
    dataset, _ = load_dataset("sklearn:wine")
    write_dataset(dataset, tmp_path / "d.parquet")
    back = read_dataset(tmp_path / "d.parquet")
    assert (back.X == dataset.X).all() and (back.y == dataset.y).all()
    assert back.feature_names == dataset.feature_names
    assert back.class_names == dataset.class_names
    masks = split_masks(dataset.y, 0.25, seed=1, trials=2)
    write_splits(masks, tmp_path / "s.parquet")
    assert (read_splits(tmp_path / "s.parquet") == masks).all()


def test_synthetic_source_is_seeded_and_sized():
    dataset, digest = load_dataset("synthetic:rows=500,features=6,classes=3")
    assert dataset.X.shape == (500, 6) and dataset.n_classes == 3
    again, same = load_dataset("synthetic:rows=500,features=6,classes=3")
    assert (again.X == dataset.X).all() and digest == same
    _, other = load_dataset("synthetic:rows=500,features=6,classes=3,seed=1")
    assert other != digest


def test_synthetic_source_has_enough_informative_features_by_default():
    # Half of 5 features is 2, too few for 3 classes: the default takes the 3 needed.
    dataset, _ = load_dataset("synthetic:rows=200,features=5,classes=3")
    assert dataset.X.shape == (200, 5) and dataset.n_classes == 3
    with pytest.raises(PoisonlabError, match="too few informative features for 9 classes"):
        load_dataset("synthetic:rows=200,features=4,classes=9")


def test_synthetic_source_rejects_unknown_settings():
    with pytest.raises(PoisonlabError, match="unknown setting 'rowz'"):
        load_dataset("synthetic:rowz=10")
