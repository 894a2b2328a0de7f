"""Tests of cmsim.streams.ChannelMap."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsim.errors import ParameterError
from cmsim.streams import ChannelMap


def _cmap() -> ChannelMap:
    return ChannelMap.from_lots({"MCC": ["E1"], "API": ["A1", "A2"], "MgSt": ["L1"]},
                                api_material="API")


def test_layout_and_lookup():
    cm = _cmap()
    assert cm.n_channels == 4
    assert cm.materials == ("MCC", "API", "MgSt")
    assert cm.channels == (("MCC", "E1"), ("API", "A1"), ("API", "A2"), ("MgSt", "L1"))
    assert cm.index("API", "A2") == 2
    np.testing.assert_array_equal(cm.material_rows("API"), [1, 2])
    np.testing.assert_array_equal(cm.api_rows, [1, 2])
    assert cm.lots("API") == ("A1", "A2")
    assert cm.material_of(3) == "MgSt"


def test_bad_input_names_the_field():
    with pytest.raises(ParameterError, match="api_material"):
        ChannelMap.from_lots({"A": ["1"]}, api_material="B")
    with pytest.raises(ParameterError, match="has no lot channel"):
        ChannelMap.from_lots({"A": ["1"], "B": []}, api_material="A")
    with pytest.raises(ParameterError, match="unique"):
        ChannelMap(("A",), (("A", "1"), ("A", "1")), "A")
    with pytest.raises(ParameterError, match="channel"):
        _cmap().index("API", "nope")
    with pytest.raises(ParameterError, match="chunk"):
        _cmap().component_flows(np.zeros((3, 5)))


def test_frozen_hashable_picklable():
    cm = _cmap()
    with pytest.raises(AttributeError):
        cm.api_material = "MCC"  # type: ignore[misc]
    assert hash(cm) == hash(_cmap()) and cm == _cmap()
    cm2 = pickle.loads(pickle.dumps(cm))
    assert cm2 == cm and cm2.index("API", "A1") == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40))
def test_derived_quantities_consistent(seed, n):
    cm = _cmap()
    rng = np.random.default_rng(seed)
    x = rng.random((4, n)) + 0.01
    comp = cm.component_flows(x)
    # independent computation
    np.testing.assert_allclose(comp[0], x[0], rtol=0, atol=0)
    np.testing.assert_allclose(comp[1], x[1] + x[2], rtol=1e-15)
    np.testing.assert_allclose(comp.sum(axis=0), cm.total_flow(x), rtol=1e-14)
    frac = cm.mass_fractions(x)
    np.testing.assert_allclose(frac.sum(axis=0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(frac[1], (x[1] + x[2]) / x.sum(axis=0), rtol=1e-14)
    shares = cm.lot_shares(x, "API")
    assert set(shares) == {"A1", "A2"}
    np.testing.assert_allclose(shares["A1"] + shares["A2"], 1.0, rtol=1e-14)
    np.testing.assert_allclose(cm.component_flow(x, "API"), comp[1], rtol=1e-15)


def test_zero_flow_gives_nan_not_garbage():
    cm = _cmap()
    x = np.zeros((4, 2))
    x[0, 1] = 1.0
    assert np.isnan(cm.mass_fractions(x)[:, 0]).all()
    np.testing.assert_array_equal(cm.mass_fractions(x)[:, 1], [1.0, 0.0, 0.0])
    assert np.isnan(cm.lot_shares(x, "API")["A1"]).all()
    # a 1-D chunk is one tick
    assert cm.component_flows(np.ones(4)).shape == (3, 1)
