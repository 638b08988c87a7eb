"""config.py: overrides (unknown keys and wrong types are errors), `--set` parsing, every check."""

import dataclasses

import pytest

from ssl_keras import config as config_lib
from ssl_keras import presets
from ssl_keras.config import Config, DataConfig, ModelConfig, StageConfig


def test_config_is_frozen():
    cfg = presets.tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1


def test_override_applies_nested_values_and_keeps_the_rest():
    cfg = config_lib.override(presets.tiny(), {"finetune": {"epochs": 7}, "model": {"filters": [4, 8, 16]}})
    assert cfg.finetune.epochs == 7
    assert cfg.finetune.learning_rate == presets.tiny().finetune.learning_rate
    assert cfg.baseline == presets.tiny().baseline
    assert cfg.model.filters == (4, 8, 16)  # lists become tuples


def test_override_converts_ints_where_floats_and_freeze_strings_are_expected():
    cfg = config_lib.override(presets.tiny(), {"finetune": {"learning_rate": 1}, "freeze": 2})
    assert cfg.finetune.learning_rate == 1.0 and isinstance(cfg.finetune.learning_rate, float)
    assert cfg.freeze == "2"


def test_override_accepts_none_for_optional_data_dir():
    cfg = config_lib.override(presets.tiny(), {"data": {"data_dir": "/x"}})
    assert config_lib.override(cfg, {"data": {"data_dir": None}}).data.data_dir is None


@pytest.mark.parametrize(
    "values, key",
    [
        ({"nosuch": 1}, "nosuch"),
        ({"data": {"nosuch": 1}}, "data.nosuch"),
        ({"finetune": {"epoch": 5}}, "finetune.epoch"),
    ],
)
def test_override_with_unknown_key_names_it(values, key):
    with pytest.raises(ValueError, match="Unknown config key") as e:
        config_lib.override(presets.tiny(), values)
    assert f" {key}." in str(e.value)  # the full dotted path, e.g. "data.nosuch"


@pytest.mark.parametrize(
    "values, where",
    [
        ({"seed": "0"}, "`seed`"),
        ({"seed": True}, "`seed`"),  # a bool is not an int here
        ({"data": {"image_size": "big"}}, "`data.image_size`"),
        ({"data": {"image_size": 32.0}}, "`data.image_size`"),
        ({"model": {"filters": "abc"}}, "`model.filters`"),
        ({"model": {"filters": [8, "16"]}}, "`model.filters`"),
        ({"data": 5}, "`data`"),
        ({"also_frozen": "yes"}, "`also_frozen`"),
    ],
)
def test_override_with_wrong_type_raises(values, where):
    with pytest.raises(ValueError, match="Received") as e:
        config_lib.override(presets.tiny(), values)
    assert where in str(e.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("finetune.epochs=5", {"finetune": {"epochs": 5}}),
        ("finetune.learning_rate=3e-4", {"finetune": {"learning_rate": 3e-4}}),
        ("model.filters=[8, 16]", {"model": {"filters": [8, 16]}}),
        ("data.data_dir=../shared/data/dogs", {"data": {"data_dir": "../shared/data/dogs"}}),  # not JSON: a string
        ("data.data_dir=null", {"data": {"data_dir": None}}),
        ("freeze=all", {"freeze": "all"}),
        ("also_frozen=false", {"also_frozen": False}),
        ("data.tfds_name=a=b", {"data": {"tfds_name": "a=b"}}),  # only the first "=" splits
    ],
)
def test_parse_assignment(text, expected):
    assert config_lib.parse_assignment(text) == expected


def test_parse_assignment_without_equals_sign():
    with pytest.raises(ValueError, match="KEY=VALUE.*Received: 'finetune.epochs'"):
        config_lib.parse_assignment("finetune.epochs")


def test_parse_assignment_then_override():
    cfg = config_lib.override(presets.tiny(), config_lib.parse_assignment("pretext.epochs=3"))
    assert cfg.pretext.epochs == 3


def _post_init_cases():
    cases = [
        (DataConfig, {"num_classes": 1}, "num_classes"),
        (DataConfig, {"classes": ("beagle",)}, "classes"),
        (DataConfig, {"labels_per_class": -1}, "labels_per_class"),
        (DataConfig, {"val_fraction": 0.0}, "val_fraction"),
        (DataConfig, {"val_per_class": 0}, "val_per_class"),
        (DataConfig, {"test_fraction": 0.0}, "test_fraction"),
        (DataConfig, {"test_fraction": 1.0}, "test_fraction"),
        (DataConfig, {"max_test_per_class": -1}, "max_test_per_class"),
        (DataConfig, {"max_unlabelled": -1}, "max_unlabelled"),
        (DataConfig, {"image_size": 15}, "image_size"),
        (DataConfig, {"image_size": 513}, "image_size"),
        (DataConfig, {"batch_size": 0}, "batch_size"),
        (ModelConfig, {"filters": ()}, "filters"),
        (ModelConfig, {"filters": (8, 0)}, "filters"),
        (ModelConfig, {"convs_per_block": 0}, "convs_per_block"),
        (ModelConfig, {"pooling": "max"}, "pooling"),
        (ModelConfig, {"dense_units": 0}, "dense_units"),
        (ModelConfig, {"dropout": 1.0}, "dropout"),
        (ModelConfig, {"dropout": -0.1}, "dropout"),
        (ModelConfig, {"pretext_blocks": -1}, "pretext_blocks"),
        (StageConfig, {"epochs": 0}, "epochs"),
        (StageConfig, {"learning_rate": 0.0}, "learning_rate"),
        (StageConfig, {"weight_decay": -1e-4}, "weight_decay"),
        (StageConfig, {"patience": -1}, "patience"),
        (StageConfig, {"translate": 1.0}, "translate"),
        (StageConfig, {"zoom": -0.1}, "zoom"),
        (Config, {"freeze": "banana"}, "freeze"),
        (Config, {"freeze": "0"}, "freeze"),
        (Config, {"freeze": "5"}, "freeze"),  # the default backbone has 4 blocks
        (Config, {"transfer_blocks": 5}, "transfer_blocks"),
        (Config, {"transfer_blocks": -1}, "transfer_blocks"),
        (Config, {"finetune_from": "teacher"}, "finetune_from"),
        (Config, {"strategy": "tpu"}, "strategy"),
        (Config, {"top_k": 0}, "top_k"),
    ]
    if "bn_momentum" in {f.name for f in dataclasses.fields(ModelConfig)}:
        cases += [(ModelConfig, {"bn_momentum": m}, "bn_momentum") for m in (0.0, 1.0)]
    return cases


@pytest.mark.parametrize("cls, kwargs, name", _post_init_cases(), ids=lambda v: getattr(v, "__name__", None))
def test_each_check_says_what_it_received(cls, kwargs, name):
    with pytest.raises(ValueError) as e:
        cls(**kwargs)
    message = str(e.value)
    assert f"`{name}`" in message
    assert "Received" in message
    value = next(iter(kwargs.values()))
    if not isinstance(value, tuple):
        assert str(value) in message  # the bad value itself is shown


def test_freeze_at_most_the_number_of_blocks():
    assert Config(model=ModelConfig(filters=(8, 16)), freeze="2").freeze == "2"
    with pytest.raises(ValueError, match="at most the number of blocks \\(2\\). Received: 3"):
        Config(model=ModelConfig(filters=(8, 16)), freeze="3")


def test_transfer_blocks_must_cover_the_frozen_ones():
    assert Config(freeze="2", transfer_blocks=2).transfer_blocks == 2
    assert Config(freeze="none", transfer_blocks=1).transfer_blocks == 1
    for freeze in ("3", "all"):
        with pytest.raises(ValueError, match="would freeze blocks that `transfer_blocks` \\(2\\)"):
            Config(freeze=freeze, transfer_blocks=2)


def test_finetune_from_frozen_needs_the_frozen_classifier():
    assert Config(finetune_from="frozen").finetune_from == "frozen"
    for kwargs in ({"also_frozen": False}, {"freeze": "all"}):
        with pytest.raises(ValueError, match="`finetune_from='frozen'` starts the fine-tuned classifier from"):
            Config(finetune_from="frozen", **kwargs)


def test_checks_also_run_on_override():
    with pytest.raises(ValueError, match="`dropout` must be in \\[0, 1\\). Received: 2.0"):
        config_lib.override(presets.tiny(), config_lib.parse_assignment("model.dropout=2"))


def test_the_config_and_the_command_line_import_no_tensorflow():
    """`config` reads the method table, which imports every method module: none may load TensorFlow or Keras, so
    that the command line checks its input before TensorFlow starts (`quiet.import_tensorflow`)."""
    import os
    import subprocess
    import sys

    code = ("import sys; import ssl_keras.run, ssl_keras.config, ssl_keras.methods; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"baseline": {"validate_every": 0}}, "`validate_every` must be >= 1. Received: 0"),
        ({"pretext": {"schedule": "linear"}}, "`schedule` must be one of \\('cosine', 'onecycle'\\). Received: 'linear'"),
        ({"data": {"pretext_batch_size": -1}}, "`pretext_batch_size` must be 0 \\(batch_size\\) or >= 1. Received: -1"),
        ({"fixmatch": {"bn_batches": 0}}, "`fixmatch.bn_batches` must be >= 1. Received: 0"),
    ],
)
def test_stage_schedule_validation_and_pretext_batch_are_checked(values, message):
    with pytest.raises(ValueError, match=message):
        config_lib.override(presets.tiny(), values)
