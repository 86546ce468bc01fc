"""Strategies: parsing, validation messages and cell applicability."""

import pytest

from rnn_gradients.engine.strategies import STRATEGY_KEYS, Strategy


def test_bundle_is_parsed_and_round_trips():
    strategy = Strategy.from_dict("clip_and_ln", {"clip_norm": 1.0, "norm": "layer"})
    assert strategy.clip_norm == 1.0
    assert strategy.norm == "layer"
    assert strategy.init == "default"
    assert strategy.params() == {"clip_norm": 1.0, "norm": "layer"}
    assert Strategy.from_dict("none", {}).params() == {}


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ValueError, match="clip_nrom") as err:
        Strategy.from_dict("typo", {"clip_nrom": 1.0})
    for key in STRATEGY_KEYS:
        assert key in str(err.value)


@pytest.mark.parametrize("value", [-1.0, 0, float("nan"), "1.0", True])
def test_clip_threshold_must_be_positive_number(value):
    with pytest.raises(ValueError, match="clip_norm must be a positive finite number") as err:
        Strategy.from_dict("bad", {"clip_norm": value})
    assert repr(value) in str(err.value)


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ValueError, match="norm = 'group' is not allowed; allowed: none, layer, batch"):
        Strategy.from_dict("bad", {"norm": "group"})
    with pytest.raises(ValueError, match="allowed: default, orthogonal, identity, scaled"):
        Strategy.from_dict("bad", {"init": "xavier"})


def test_scaled_init_needs_its_spectral_norm_and_only_it_takes_one():
    with pytest.raises(ValueError, match="needs spectral_norm"):
        Strategy.from_dict("explode", {"init": "scaled"})
    with pytest.raises(ValueError, match="spectral_norm only applies with init 'scaled'"):
        Strategy.from_dict("odd", {"spectral_norm": 2.0})
    assert Strategy.from_dict("explode", {"init": "scaled", "spectral_norm": 3}).spectral_norm == 3.0


def test_chrono_is_rejected_for_cells_without_gates():
    chrono = Strategy.from_dict("chrono", {"chrono": True})
    chrono.check_applicable("lstm")
    chrono.check_applicable("gru")
    with pytest.raises(ValueError, match="cannot apply to cell 'rnn_tanh'; it applies to: lstm, gru"):
        chrono.check_applicable("rnn_tanh")
    with pytest.raises(ValueError, match="chrono must be true or false"):
        Strategy.from_dict("chrono", {"chrono": "yes"})
