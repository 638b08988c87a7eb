"""split.py: declared splits, class choice and the seeded split (pure Python, no TensorFlow)."""

import os
from collections import Counter

import pytest

from ssl_keras import sources
from ssl_keras import split as split_lib
from ssl_keras.split import Record


# --- declared splits and class choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, split",
    [
        ("imagewoof_train_ILSVRC2012_val_00001564.jpg", "train"),  # the first split token wins
        ("imagewoof_train_n02099601_1234.jpg", "train"),
        ("imagewoof_val_n02086240_1.jpg", "test"),
        ("beagle/imagewoof_val_n02088364_7850.jpg", "test"),
        ("stanforddogs_crop224_n02110958_10.jpg", None),
        ("photo-test-3.PNG", "test"),
        ("x_valid_1.jpg", "test"),
        ("trainer_1.jpg", None),  # a whole token, not a prefix
        ("train/photo.jpg", None),  # the folder does not count, only the file name
    ],
)
def test_declared_split(name, split):
    assert split_lib.declared_split(name) == split


@pytest.fixture(scope="module")
def dog_records(dogs_dir):
    return sources.ImageFolder(dogs_dir).records()


@pytest.fixture(scope="module")
def imagewoof_breeds(dogs_dir):
    return sorted(d for d in os.listdir(dogs_dir) if os.path.isdir(os.path.join(dogs_dir, d))
                  and any(f.startswith("imagewoof_") for f in os.listdir(os.path.join(dogs_dir, d))))


def test_choose_classes_default_is_the_ten_imagewoof_breeds(dog_records, imagewoof_breeds):
    assert len(imagewoof_breeds) == 10
    chosen = split_lib.choose_classes(dog_records)
    assert chosen == imagewoof_breeds  # sorted by name
    # ... because they are the ten with the most photos.
    counts = Counter(r.label for r in dog_records)
    others = set(counts) - set(chosen)
    assert others
    assert min(counts[c] for c in chosen) > max(counts[c] for c in others)


def test_choose_classes_breaks_ties_by_name():
    records = [Record(f"{c}/{i}.jpg", c) for c, n in (("b", 3), ("a", 3), ("c", 3), ("d", 1)) for i in range(n)]
    assert split_lib.choose_classes(records, num_classes=2) == ["a", "b"]


def test_choose_classes_as_given_and_checked(dog_records):
    assert split_lib.choose_classes(dog_records, ("samoyed", "beagle")) == ["beagle", "samoyed"]
    with pytest.raises(ValueError, match=r"Unknown class\(es\) \['poodle'\]"):
        split_lib.choose_classes(dog_records, ("beagle", "poodle"))
    with pytest.raises(ValueError, match="`num_classes` is 50 but the data has only 21 classes"):
        split_lib.choose_classes(dog_records, num_classes=50)


# --- the split -----------------------------------------------------------------------------------------------


def _keys(split, part):
    return [item[0] if isinstance(item, list) else item for item in split[part]]


PARTS = ("labelled", "val", "test", "unlabelled", "unlabelled_val")


@pytest.fixture(scope="module", params=["ten imagewoof breeds", "beagle pug samoyed"])
def real_split(request, dog_records):
    """The default choice (every class has declared test photos; the other breeds have none), and a mix:
    pug declares no test photos, and the seven imagewoof breeds left out do."""
    if request.param == "ten imagewoof breeds":
        classes = split_lib.choose_classes(dog_records)
    else:
        classes = ["beagle", "pug", "samoyed"]
    return classes, split_lib.make_split(dog_records, classes, labels_per_class=57, val_per_class=20, seed=0)


def test_split_parts_are_pairwise_disjoint_and_lose_nothing(dog_records, real_split):
    classes, split = real_split
    keys = {part: _keys(split, part) for part in PARTS}
    for part in PARTS:
        assert len(set(keys[part])) == len(keys[part]), f"duplicates in {part}"
    for i, a in enumerate(PARTS):
        for b in PARTS[i + 1:]:
            assert not set(keys[a]) & set(keys[b]), f"{a} and {b} overlap"
    # No cap was set: every photo is somewhere, except the declared test photos of the classes left out.
    everything = set().union(*keys.values())
    assert everything == {r.key for r in dog_records if r.declared != "test" or r.label in classes}


def test_split_keeps_declared_test_photos_out_of_training(dog_records, real_split):
    classes, split = real_split
    declared_test = {r.key for r in dog_records if r.declared == "test"}
    assert declared_test
    assert set(_keys(split, "test")) >= {k for k in declared_test if k.split("/")[0] in classes}
    for part in ("labelled", "val", "unlabelled", "unlabelled_val"):
        assert not set(_keys(split, part)) & declared_test, f"a declared test photo is in {part}"


def test_split_test_part_per_class(dog_records, real_split):
    classes, split = real_split
    counts = Counter(r.label for r in dog_records)
    declared = Counter(r.label for r in dog_records if r.declared == "test")
    for i, cls in enumerate(classes):
        test = [k for k, y in split["test"] if y == i]
        # The declared test photos when the class has some, else a seeded 20 % of its photos.
        assert len(test) == (declared[cls] or round(0.2 * counts[cls])), cls


def test_split_counts_and_labels_per_class(real_split):
    classes, split = real_split
    assert split["classes"] == classes
    for part, n in (("labelled", 57), ("val", 20)):
        per_class = Counter(y for _, y in split[part])
        assert per_class == {i: n for i in range(len(classes))}
        for key, y in split[part]:
            assert classes[y] == key.split("/")[0]
    pool = len(split["unlabelled"]) + len(split["unlabelled_val"])
    assert len(split["unlabelled_val"]) == min(1000, pool // 10)


def test_unlabelled_pool_includes_other_breeds(dog_records, real_split):
    classes, split = real_split
    breeds = {k.split("/")[0] for k in _keys(split, "unlabelled") + _keys(split, "unlabelled_val")}
    assert breeds == {r.label for r in dog_records}  # the breeds left out, and the leftovers of the chosen


def test_split_is_seeded(dog_records, real_split):
    classes, split = real_split
    kwargs = dict(labels_per_class=57, val_per_class=20)
    assert split_lib.make_split(dog_records, classes, seed=0, **kwargs) == split
    other = split_lib.make_split(dog_records, classes, seed=1, **kwargs)
    assert other["labelled"] != split["labelled"]
    declared = {r.key for r in dog_records if r.declared == "test"}
    # Declared test photos do not depend on the seed.
    assert [k for k in other["test"] if k[0] in declared] == [k for k in split["test"] if k[0] in declared]


def test_split_caps_test_and_unlabelled(dog_records):
    classes = ["beagle", "dingo", "samoyed"]
    split = split_lib.make_split(dog_records, classes, labels_per_class=5, val_per_class=2, max_test_per_class=7,
                            max_unlabelled=300, seed=0)
    assert Counter(y for _, y in split["test"]) == {0: 7, 1: 7, 2: 7}
    assert all(k.split("/")[1].startswith("imagewoof_val_") for k in _keys(split, "test"))
    assert len(split["unlabelled"]) == 270 and len(split["unlabelled_val"]) == 30
    # The cap draws from its own generator: the same seed keeps the same labelled, validation and unlabelled
    # photos with or without it (`quick` caps the test photos, `default` does not).
    uncapped = split_lib.make_split(dog_records, classes, labels_per_class=5, val_per_class=2, max_unlabelled=300,
                                    seed=0)
    assert len(uncapped["test"]) > len(split["test"])
    for part in ("labelled", "val", "unlabelled", "unlabelled_val"):
        assert split[part] == uncapped[part], part


def _synthetic(**sizes):
    """Records with no declared split: `a=30` -> a/0.jpg ... a/29.jpg."""
    return [Record(f"{c}/{i}.jpg", c) for c, n in sizes.items() for i in range(n)]


def test_split_without_declared_test_uses_test_fraction():
    split = split_lib.make_split(_synthetic(a=50, b=40, c=10), ["a", "b"], labels_per_class=10, val_per_class=5,
                            test_fraction=0.2, seed=0)
    assert Counter(y for _, y in split["test"]) == {0: 10, 1: 8}
    assert Counter(y for _, y in split["labelled"]) == {0: 10, 1: 10}
    # 25 + 17 leftovers of a and b, and all 10 photos of c.
    assert len(split["unlabelled"]) + len(split["unlabelled_val"]) == 52


def test_split_with_too_few_photos_names_the_class():
    with pytest.raises(ValueError, match="Class 'b' has 4 photos outside its test split") as e:
        split_lib.make_split(_synthetic(a=30, b=5), ["a", "b"], labels_per_class=10, val_per_class=2, seed=0)
    assert "labels_per_class + val_per_class = 10 + 2 = 12" in str(e.value)


def test_labels_per_class_all_labels_every_photo_but_validation_and_test():
    records = [Record(f"{c}/{i}.jpg", c) for c in ("a", "b") for i in range(20)]
    s = split_lib.make_split(records, ["a", "b"], labels_per_class=0, val_per_class=3, test_fraction=0.25, seed=0)
    assert len(s["test"]) == 10 and len(s["val"]) == 6 and len(s["labelled"]) == 24
    assert s["unlabelled"] == [] and s["unlabelled_val"] == []
