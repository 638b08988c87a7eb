"""presets.py: every preset is a valid config that round-trips through config.json; each says its command."""

import pytest

from ssl_keras import config as config_lib
from ssl_keras import presets
from ssl_keras.config import Config


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name):
    cfg = presets.preset(name)
    assert isinstance(cfg, Config)
    assert cfg.preset == name
    # What run.py writes to config.json builds the same config back.
    assert config_lib.from_dict(config_lib.to_dict(cfg)) == cfg
    assert isinstance(config_lib.to_dict(cfg)["model"]["filters"], list)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="Unknown preset 'nosuch'") as e:
        presets.preset("nosuch")
    assert "tiny" in str(e.value)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_each_preset_docstring_gives_its_command(name):
    doc = presets.PRESETS[name].__doc__
    assert "python -m ssl_keras.run" in doc and (name == "default" or f"--preset {name}" in doc), name
