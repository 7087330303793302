"""TokenHeatmap without a browser: inputs (arrays, dicts, AttributionResults), validation, wire state, selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain as nx
from nbexplain.widgets import TokenHeatmap
from nbexplain.widgets.tensor import _deserialize_tensor

TOKENS = ["the", " film", " was", " not", " good", "\n"]


def test_rows_from_a_dict_keep_labels_values_and_order() -> None:
    a = np.array([0.0, 0.1, 0.0, -0.8, 0.5, 0.0])
    b = torch.tensor([0.1, 0.2, 0.0, -0.3, 0.6, 0.0], dtype=torch.float64)
    w = TokenHeatmap(TOKENS, {"LRP": a, "gradient × input": b})
    assert w.labels == ["LRP", "gradient × input"]
    assert w.tokens == [TOKENS] and w.offsets == [0, 6]
    assert w.relevance.dtype == np.float32 and w.relevance.shape == (2, 6)
    assert np.array_equal(w.relevance, np.stack([a, b.numpy()]).astype(np.float32))
    assert np.array_equal(w.sequence_maps(), np.stack([a, b.numpy()]))  # float64, as given
    assert repr(w) == "TokenHeatmap(rows=2, sequences=1, tokens=6, scale=shared)"
    assert w.shared_scale and w.vmax == 0.0 and w.value_label == "relevance" and w.scale == 1.0


def test_array_forms_for_one_and_several_sequences() -> None:
    one = TokenHeatmap(TOKENS, np.arange(6.0))
    assert one.labels == ["relevance"] and one.relevance.shape == (1, 6)
    rows = TokenHeatmap(TOKENS, np.arange(12.0).reshape(2, 6))
    assert rows.labels == ["row 0", "row 1"] and np.array_equal(rows.relevance[1], np.arange(6, 12))
    seqs = [TOKENS, TOKENS[::-1], TOKENS[:3]]
    v = np.arange(3 * 2 * 6, dtype=np.float64).reshape(3, 2, 6)  # rows × S × T, with S = 2
    several = TokenHeatmap(seqs[:2], v)
    assert several.offsets == [0, 6, 12] and several.relevance.shape == (3, 12)
    assert np.array_equal(several.relevance, v.reshape(3, 12))
    assert np.array_equal(several.sequence_maps(1), v[:, 1])
    # sequences of different lengths: one row's maps as a list of 1-D maps
    ragged = TokenHeatmap([TOKENS, TOKENS[:3]], {"a": [np.ones(6), -np.ones(3)], "b": [np.zeros(6), np.arange(3.0)]})
    assert ragged.offsets == [0, 6, 9]
    assert np.array_equal(ragged.relevance, [[1] * 6 + [-1] * 3, [0] * 6 + [0, 1, 2]])
    plain = TokenHeatmap([TOKENS, TOKENS[:3]], [np.ones(6), np.zeros(3)])
    assert plain.labels == ["relevance"] and plain.relevance.shape == (1, 9)


def test_attribution_results_of_token_ids_become_rows() -> None:
    from nbexplain.architectures import rnn_classifier

    model = rnn_classifier(seed=0)
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    grad = nx.gradient(model, ids)
    gxi = nx.gradient_x_input(model, ids)
    assert gxi.attribution.shape == (3, 7)
    tokens = [[f"w{int(i)}" for i in row] for row in ids]
    w = TokenHeatmap(tokens, [grad, gxi])
    assert w.labels == ["gradient", "gradient_x_input"]
    want = torch.stack([grad.attribution, gxi.attribution]).reshape(2, 21).float().numpy()
    assert np.array_equal(w.relevance, want)
    assert np.allclose(w.sequence_maps(2)[1], gxi.attribution[2].double().numpy(), rtol=0, atol=0)
    # one sequence of the batch: its tokens and that sample of the result
    one = TokenHeatmap(tokens[1], {"target 0": gxi.attribution[1], "same": gxi.attribution[1:2]})
    assert np.array_equal(one.relevance[0], gxi.attribution[1].float().numpy())
    assert np.array_equal(one.relevance[0], one.relevance[1])
    # the same method twice gets distinct labels; several targets as a dict of results
    twice = TokenHeatmap(tokens, [gxi, gxi])
    assert twice.labels == ["gradient_x_input", "gradient_x_input (2)"]
    by_target = TokenHeatmap(tokens, {f"class {c}": nx.gradient_x_input(model, ids, c) for c in (0, 3)})
    assert by_target.labels == ["class 0", "class 3"]
    assert not np.array_equal(by_target.relevance[0], by_target.relevance[1])


def test_lrp_results_are_labelled_by_their_composite() -> None:
    res = nx.AttributionResult(torch.tensor([[0.5, -0.25]]), torch.tensor([0]), torch.zeros(1, 2),
                               torch.zeros(1, dtype=torch.float64), "lrp", {"composite": "epsilon_plus"})
    assert TokenHeatmap(["a", "b"], res).labels == ["LRP epsilon_plus"]
    assert TokenHeatmap(["a", "b"], res, row_labels=["mine"]).labels == ["mine"]


@pytest.mark.parametrize(("tokens", "maps", "kwargs", "error", "match"), [
    ("the film", np.zeros(2), {}, TypeError, r"`tokens` .* got one string"),
    ([], np.zeros(0), {}, TypeError, r"`tokens` must be a non-empty list"),
    ([["a"], "b"], np.zeros((2, 1)), {}, TypeError, r"`tokens\[1\]` must be a list of strings"),
    ([["a", 3]], np.zeros((1, 2)), {}, TypeError, r"`tokens\[0\]` must be a list of strings .* found a int"),
    ([["a"], []], np.zeros(1), {}, ValueError, r"`tokens\[1\]` is empty"),
    (TOKENS, np.zeros(5), {}, ValueError, r"`maps` has 5 values for `tokens` with 6 tokens"),
    (TOKENS, {"x": np.zeros(6), "y": np.zeros(7)}, {}, ValueError, r"`maps\['y'\]` has 7 values for `tokens`"),
    (TOKENS, np.zeros((2, 3, 6)), {}, ValueError, r"`maps` must be \(T,\) or \(rows, T\)"),
    (TOKENS, np.zeros((2, 6, 4)), {}, ValueError, r"`maps` must be \(T,\) or \(rows, T\)"),
    ([TOKENS, TOKENS], np.zeros((3, 6)), {}, ValueError, r"`maps` has shape \(3, 6\), but `tokens` holds 2"),
    ([TOKENS, TOKENS[:2]], {"a": [np.zeros(6), np.zeros(3)]}, {}, ValueError,
     r"`maps\['a'\]` has 3 values for sequence 1 of `tokens` with 2 tokens"),
    (TOKENS, {}, {}, ValueError, r"`maps` is an empty dict"),
    (TOKENS, np.array([0, 1, np.nan, 0, 0, 0]), {}, ValueError, r"`maps` contains NaN"),
    (TOKENS, ["a"] * 6, {}, TypeError, r"`maps\[0\]` must hold numbers .* got str"),
    (TOKENS, np.zeros((2, 6)), {"row_labels": ["one"]}, ValueError, r"`row_labels` has 1 entries for 2 rows"),
    (TOKENS, np.zeros(6), {"row_labels": "one"}, TypeError, r"`row_labels` must be a list of strings"),
    (TOKENS, np.zeros(6), {"vmax": 0}, ValueError, r"`vmax` must be a positive finite number"),
    (TOKENS, np.zeros(6), {"vmax": float("inf")}, ValueError, r"`vmax` must be a positive finite number"),
    ([TOKENS, TOKENS], np.zeros((2, 6)), {"sequence": 2}, traitlets.TraitError, r"`sequence` must be in 0…1"),
    (TOKENS, np.zeros(6), {"scale": 9}, traitlets.TraitError, r"scale"),
    (TOKENS, np.zeros(6), {"max_bytes": 8}, ValueError, r"`maps` would send 24 bytes .* over `max_bytes`=8"),
    (TOKENS, np.zeros(6), {"shared": True}, TypeError, r"unexpected keyword argument 'shared'.*'shared_scale'"),
    (TOKENS, np.zeros(6), {"relevance": np.zeros((1, 6))}, TypeError, r"takes the values as `maps`.*not `relevance=`"),
    (TOKENS, np.zeros(6), {"selected": (1, 0)}, traitlets.TraitError, r"`selected` must be \(row, token\) with row in 0…0"),
])
def test_bad_inputs_name_the_argument(tokens, maps, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        TokenHeatmap(tokens, maps, **kwargs)


def test_a_batch_result_for_one_sequence_says_how_to_pass_the_batch() -> None:
    res = nx.AttributionResult(torch.zeros(4, 6), torch.zeros(4, dtype=torch.long), torch.zeros(4, 2),
                               torch.zeros(4, dtype=torch.float64), "gradient")
    with pytest.raises(ValueError, match=r"explains one sequence per sample: pass its sequences' tokens as a list"):
        TokenHeatmap(TOKENS, res)
    emb = nx.AttributionResult(torch.zeros(1, 6, 8), torch.zeros(1, dtype=torch.long), torch.zeros(1, 2),
                               torch.zeros(1, dtype=torch.float64), "gradient")
    with pytest.raises(ValueError, match=r"sum the last dimension first"):
        TokenHeatmap([TOKENS], emb)


def test_selection_is_validated_synced_and_cleared_by_a_new_sequence() -> None:
    w = TokenHeatmap([TOKENS, TOKENS[:2]], {"a": [np.arange(6.0), np.array([10.0, -11.0])],
                                            "b": [-np.arange(6.0), np.array([0.5, 0.25])]})
    seen = []
    w.observe(lambda c: seen.append(c["new"]), "selected")
    assert w.selected == (-1, -1) and w.selected_value is None and w.selected_token is None
    w.selected = (1, 4)
    assert seen == [(1, 4)] and w.selected_value == -4.0 and w.selected_token == " good"
    # the front end sends a JSON list
    w.set_state({"selected": [0, 3]})
    assert w.selected == (0, 3) and w.selected_value == 3.0
    with pytest.raises(traitlets.TraitError, match=r"`selected` must be \(row, token\) with row in 0…1 and token in 0…5"):
        w.selected = (2, 0)
    with pytest.raises(traitlets.TraitError, match=r"token in 0…5"):
        w.selected = (0, 6)
    w.set_state({"sequence": 1})
    assert w.sequence == 1 and w.selected == (-1, -1)
    w.selected = (0, 1)
    assert w.selected_value == -11.0 and w.selected_token == " film"
    with pytest.raises(traitlets.TraitError, match=r"token in 0…1 \(sequence 1\)"):
        w.selected = (0, 2)
    # a selection given to the constructor is checked against the data
    given = TokenHeatmap([TOKENS, ["a", "b"]], [np.zeros(6), np.array([0.5, -2.0])], sequence=1, selected=(0, 1))
    assert given.selected == (0, 1) and given.selected_value == -2.0 and given.selected_token == "b"
    # new data replace everything and clear the selection
    w.set_data(TOKENS, np.ones(6), row_labels=["only"])
    assert w.selected == (-1, -1) and w.sequence == 0 and w.labels == ["only"] and w.offsets == [0, 6]
    assert len(w.values) == 1


def test_state_round_trips_with_relevance_as_a_binary_buffer() -> None:
    seqs = [TOKENS, ["a", "\t", ""]]
    rng = np.random.default_rng(0)
    maps = {"x": [rng.standard_normal(6), rng.standard_normal(3)], "y": [rng.standard_normal(6), rng.standard_normal(3)]}
    w = TokenHeatmap(seqs, maps, shared_scale=False, vmax=2.5, value_label="score", scale=1.5, sequence=1)
    state, buffer_paths, buffers = _remove_buffers(w.get_state())
    assert buffer_paths == [["relevance", "view"]] and buffers[0].nbytes == 2 * 9 * 4
    text = json.dumps(state)  # everything else is plain JSON
    back = json.loads(text)
    assert back["tokens"] == seqs and back["offsets"] == [0, 6, 9] and back["labels"] == ["x", "y"]
    assert back["sequence"] == 1 and back["selected"] == [-1, -1] and back["shared_scale"] is False
    assert (back["vmax"], back["value_label"], back["scale"]) == (2.5, "score", 1.5)
    back["relevance"]["view"] = buffers[0]
    rel = _deserialize_tensor(back["relevance"])
    want = np.stack([np.concatenate(maps["x"]), np.concatenate(maps["y"])]).astype(np.float32)
    assert np.array_equal(rel, want)
    # the state a front end would hold restores an equal widget
    other = TokenHeatmap(["z"], np.zeros(1))
    other.set_state({k: back[k] for k in ("tokens", "offsets", "labels", "relevance", "shared_scale", "vmax",
                                          "value_label", "scale")})
    other.set_state({"sequence": 1})  # the view sends a new sequence (which clears the selection), then a click
    other.set_state({"selected": [1, 2]})
    assert other.selected == (1, 2) and np.array_equal(other.relevance, want) and other.tokens == seqs


def test_the_view_reads_exactly_the_synced_traits() -> None:
    """The names in js/token_heatmap.ts's `interface State` are the widget's own synced traits (no drift)."""
    import re
    from pathlib import Path

    src = (Path(__file__).resolve().parents[2] / "js" / "token_heatmap.ts").read_text()
    body = re.search(r"interface State \{(.*?)\n\}", src, re.S).group(1)
    js_names = set(re.findall(r"^\s*(\w+):", body, re.M))
    w = TokenHeatmap(["a"], np.zeros(1))
    own = {k for k in w.keys if not k.startswith("_")} - {"layout", "tabbable", "tooltip"}
    assert js_names == own
    for name in js_names:
        assert f'model.get("{name}")' in src, f"the view never reads `{name}`"
