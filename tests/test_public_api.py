"""The public API's vocabulary (docs/architecture.md, "One vocabulary"), enforced by introspection.

Every public function, class constructor and widget is read from ``nx.__all__``, the ``nx.objectives``
namespace and ``nbexplain.widgets.__all__``; each rule below names the offenders, so a new entry point that
breaks the vocabulary fails here with its name. Deliberate exceptions are listed next to the rule, each with
its reason.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator

import pytest
import torch

import nbexplain as nx
import nbexplain.widgets as nxw

#: Attribution entry points, renamed on their own branch (x → inputs, eval → eval_mode, target=None) together
#: with the LRP namespaces (nx.rules, nx.canonizers). Skipped by every rule until that branch is merged; then
#: this set is emptied and the rules hold for them too.
_PENDING_ATTRIBUTION: set[str] = set()

#: Records, snapshots and stateful objects: returned or built by nbexplain, named for what they are.
_NOT_RESULTS = {
    "EpochRecord", "ModelSnapshot", "SaturationTracker", "RunningMoments", "DeltaProjection", "StreamingSimilarity",
    "Captured", "LayerList", "Objective", "Inputs", "Target", "Composite",
    "ToyDataset", "EpochMetrics", "PlaygroundTrainer",  # the playground's data set, per-epoch record, trainer
}

#: How many parameters may be passed by position: the subject (model, inputs, what is explained); every option
#: after it is keyword-only. Every public callable is listed, so a new one states its subject here.
MAX_POSITIONAL: dict[str, int] = {
    # shared machinery
    "Captured": 0, "LayerList": 1, "Objective": 0, "Inputs": 0, "ModelSnapshot": 1, "preserved": 1, "Target": 1,
    "activations": 3,            # model, inputs, layers
    "capture": 2,                # model, layers
    "list_layers": 2,            # model, inputs (an optional example batch)
    "to_features": 1,            # output
    "RunningMoments": 1,         # n_features
    # feature-space saturation
    "SaturationTracker": 2,      # model, layers
    "layer_statistics": 3,       # model, inputs, layers
    "intrinsic_dimension": 2,    # eigenvalues, delta
    "saturation": 2,             # eigenvalues, delta
    "DeltaProjection": 2,        # stats, delta
    "delta_curve": 4,            # model, inputs, layer, stats
    "projected_outputs": 4,      # model, inputs, layer, stats
    "probe_accuracy": 4,         # model, train, test, layers
    # similarity
    "cca": 2, "svcca": 2, "pwcca": 2, "cka": 2,   # x, y
    "StreamingSimilarity": 2,    # x_features, y_features
    "similarity_grid": 3,        # checkpoints, inputs, layers
    "model_similarity": 4,       # model_a, model_b, inputs, layers
    # activation maximization
    "maximize_activation": 5,    # model, layer, unit, input_shape, value_range
    "top_activating": 4,         # model, inputs, layer, unit
    "channel": 2, "neuron": 2, "class_logit": 2,  # layer, unit
    "direction": 2,              # layer, vector
    "diversity": 1,              # layer
    # complexity
    "decompose_complexity": 4,   # model, train, test, layer
    "shapley_values": 2,         # game, n_players
    "dft_cca": 2, "svcca_directions": 2,          # x, y
    "StreamingDFTCCA": 3,        # x_channels, y_channels, spatial
    "class_sensitivity": 3,      # checkpoints, inputs, layers
    "svcca_compression": 4,      # model, inputs, layer, directions
    "suggest_widths": 1,         # tracker
    # attribution
    "gradient": 3, "gradient_x_input": 3, "integrated_gradients": 3, "smoothgrad": 3, "rde": 3,  # model, inputs, target
    "lrp": 4,                    # model, inputs, target, composite
    "relevance_flow": 4,         # model, inputs, target, composite
    "noise_tunnel": 4,           # method, model, inputs, target
    "continuity": 2,             # explain, inputs
    "attention_rollout": 2,      # model, inputs (no target: rollout explains no score)
    "lrp_rules": 2,              # model, composite
    "Composite": 1,              # rules
    "register_composite": 2,     # name, builder
    "unregister_composite": 1,   # name
    # LRP rules (nx.rules): what defines the rule; stabilisers and bias keyword-only
    "Rule": 0, "Flat": 0, "WSquare": 0, "Pass": 0, "ZPlus": 0, "ZeroRule": 0,
    "Epsilon": 1, "Gamma": 1, "Norm": 1, "Gradient": 1, "NormIdentity": 1,   # epsilon / gamma
    "AlphaBeta": 2,              # alpha, beta
    "ZBox": 2,                   # low, high
    # canonizers (nx.canonizers)
    "Canonizer": 0, "MergeBatchNorm": 0, "ExplicitResidual": 0, "ExplicitScale": 0, "Scale": 0,
    # widgets
    "ExplanationExplorer": 4,    # model, inputs, target, methods
    "Heatmap": 2,                # maps, images
    "DeltaExplorer": 3,          # model, inputs, layer
    "FeatureGallery": 4,         # model, inputs, layer, unit
    "ComplexityViewer": 2,       # result, inputs
    "RelevanceFlow": 2,          # result, inputs (RelevanceFlow.from_model: model, inputs, target, composite)
    "SimilarityGrid": 1,         # result
    "SaturationDashboard": 1,    # tracker
    "AlignedDirections": 4,      # result, x, y, labels
    "ClassSensitivity": 1,       # result
    "TokenHeatmap": 2,           # tokens, maps
    # playground (toy 2-D data, small MLPs, everything drawn on the plane)
    "toy_dataset": 2,            # name, n
    "as_toy_dataset": 2,         # x, y (the user's points and labels)
    "playground_network": 3,     # features, hidden, classes (the network's shape)
    "FeatureMap": 1,             # features
    "hidden_layers": 1,          # model
    "PlaygroundTrainer": 2,      # model, data
    "decision_surface": 3,       # model, extent, resolution
    "neuron_maps": 4,            # model, extent, resolution, layers
    "relevance_field": 3,        # model, extent, resolution
    "projected_surface": 3,      # model, layer, stats
    "projected_surfaces": 3,     # model, layer, stats
    "plane_grid": 2,             # extent, resolution
    "layer_similarity": 2,       # snapshots, reference
    "Playground": 1,             # data
}

#: The first parameter of a callable that runs a model is `model` — except where it compares several models.
_MODEL_FIRST_EXCEPTIONS = {
    "similarity_grid": "checkpoints", "model_similarity": "model_a", "class_sensitivity": "checkpoints",
    "noise_tunnel": "method",  # wraps a method: noise_tunnel(method, model, inputs, target)
}

#: Feature-matrix math keeps the names of its equations.
_X_Y_FUNCTIONS = {"cca", "svcca", "pwcca", "cka", "dft_cca", "svcca_directions", "AlignedDirections",
                  "as_toy_dataset"}  # a classification set's points x and labels y

#: Names that mean something else in the vocabulary, or shadow a builtin.
_FORBIDDEN_PARAMETERS = {
    "x": "inputs", "data": "inputs", "example": "inputs", "eval": "eval_mode", "units": "unit",
    "targets": "target",
}
#: Fields of records that read as those names but are not arguments a user passes.
_FORBIDDEN_EXCEPTIONS = {
    ("EpochRecord", "eval"),  # the eval-mode half of one epoch's statistics
    # a ToyDataset (train and test splits, classes, the plane's extent), not the inputs of a forward pass
    ("PlaygroundTrainer", "data"), ("Playground", "data"),
}
#: Shared option names that mean something else in one callable (callable, option) → why.
_OPTION_EXCEPTIONS = {
    ("PlaygroundTrainer", "batch_size"): "the SGD minibatch (TensorFlow Playground's 10), not inputs per forward pass",
    ("Playground", "batch_size"): "the SGD minibatch (TensorFlow Playground's 10), not inputs per forward pass",
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _namespace(name: str) -> types.ModuleType | None:
    try:
        return getattr(nx, name)
    except AttributeError:
        return None


def _public() -> Iterator[tuple[str, Callable[..., object]]]:
    """Every public callable: nx.*, nx.objectives.*, nx.rules.* / nx.canonizers.* (once they exist), widgets."""
    seen: set[int] = set()
    sources: list[tuple[object, list[str]]] = [(nx, list(nx.__all__)), (nxw, list(nxw.__all__))]
    for ns in ("objectives", "rules", "canonizers"):
        mod = _namespace(ns)
        if mod is not None:
            sources.append((mod, list(getattr(mod, "__all__", []))))
    for mod, names in sources:
        for name in names:
            obj = getattr(mod, name, None)
            if not callable(obj) or isinstance(obj, types.ModuleType) or id(obj) in seen:
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            seen.add(id(obj))
            if name not in _PENDING_ATTRIBUTION:
                yield name, obj


def _is_result_record(name: str, obj: object) -> bool:
    """A dataclass nbexplain returns (a result or a record): its fields are read, not passed."""
    return inspect.isclass(obj) and dataclasses.is_dataclass(obj) and (name.endswith("Result") or name in _NOT_RESULTS)


def _params(obj: object) -> list[inspect.Parameter]:
    params = list(inspect.signature(obj).parameters.values())
    return [p for p in params if p.name != "self"]


def _callables() -> list[tuple[str, object, list[inspect.Parameter]]]:
    return [(n, o, _params(o)) for n, o in _public() if not _is_result_record(n, o)]


def test_every_public_callable_states_its_positional_subject() -> None:
    """Options are keyword-only: at most the subject is positional (MAX_POSITIONAL lists each callable)."""
    unlisted = [n for n, _, _ in _callables() if n not in MAX_POSITIONAL]
    assert unlisted == [], f"add these to MAX_POSITIONAL (subject only, options keyword-only): {unlisted}"
    too_many = {
        n: [p.name for p in ps if p.kind in _POSITIONAL]
        for n, _, ps in _callables()
        if sum(p.kind in _POSITIONAL for p in ps) != MAX_POSITIONAL[n]
    }
    assert too_many == {}, f"positional parameters differ from MAX_POSITIONAL: {too_many}"


def _runs_a_model(ps: list[inspect.Parameter]) -> bool:
    return any(p.kind in _POSITIONAL and "Module" in str(p.annotation) for p in ps)


def test_model_is_the_first_parameter_of_whatever_runs_one() -> None:
    bad = {}
    for n, _, ps in _callables():
        positional = [p for p in ps if p.kind in _POSITIONAL]
        if not _runs_a_model(ps) and not any(p.name == "model" for p in positional):
            continue
        expected = _MODEL_FIRST_EXCEPTIONS.get(n, "model")
        if positional[0].name != expected:
            bad[n] = [p.name for p in positional]
    assert bad == {}, bad


def test_data_is_called_inputs_and_comes_second() -> None:
    """`inputs` (or `train`, `test`) is the data, right after the model; never `x`, `data` or `example`."""
    forbidden, misplaced = {}, {}
    for n, _, ps in _callables():
        for p in ps:
            if p.name in _FORBIDDEN_PARAMETERS and (n, p.name) not in _FORBIDDEN_EXCEPTIONS:
                if not (n in _X_Y_FUNCTIONS and p.name == "x"):
                    forbidden.setdefault(n, []).append(f"{p.name} (use {_FORBIDDEN_PARAMETERS[p.name]})")
        positional = [p.name for p in ps if p.kind in _POSITIONAL]
        for data_name in ("inputs", "train"):
            if data_name in positional and n not in _MODEL_FIRST_EXCEPTIONS:
                if positional.index(data_name) != 1:
                    misplaced[n] = positional
    assert forbidden == {}, forbidden
    assert misplaced == {}, misplaced


def test_shared_options_have_one_name_one_default_and_are_keyword_only() -> None:
    """batch_size=256 (inputs per forward pass), progress=None (a bar after 2 s), eval_mode=True, seed and
    device/dtype/layout keyword-only."""
    rules: dict[str, tuple[object, ...]] = {
        "batch_size": (256,), "progress": (None,), "eval_mode": (True,), "seed": (0, None),
        "device": (None,), "dtype": (inspect.Parameter.empty, torch.float32, None), "layout": (None,),
    }
    bad = []
    for n, _, ps in _callables():
        for p in ps:
            if p.name not in rules or (n, p.name) in _OPTION_EXCEPTIONS:
                continue
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                bad.append(f"{n}({p.name}=...) must be keyword-only")
            if p.default not in rules[p.name]:
                bad.append(f"{n}({p.name}={p.default!r}): the default everywhere is {rules[p.name][0]!r}")
    assert bad == [], bad


def _returned_classes(obj: object) -> list[type]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        return []
    module = inspect.getmodule(obj)
    hints = typing.get_type_hints(target, globalns=vars(module) if module else None)
    ret = hints.get("return")
    found = []
    for t in typing.get_args(ret) or (ret,):
        origin = typing.get_origin(t) or t
        if inspect.isclass(origin) and origin.__module__.startswith("nbexplain"):
            found.append(origin)
    return found


def test_every_class_a_public_function_returns_is_exported_and_named_result() -> None:
    """A user can name (isinstance, type hints) whatever a public call gives back, and results read alike."""
    exported = {id(getattr(nx, n)) for n in nx.__all__ if hasattr(nx, n)}
    for ns in ("objectives", "rules", "canonizers"):
        mod = _namespace(ns)
        exported |= {id(getattr(mod, n)) for n in getattr(mod, "__all__", [])} if mod is not None else set()
    missing, misnamed = [], []
    for name, obj in _public():
        if inspect.isclass(obj):
            continue
        for cls in _returned_classes(obj):
            if id(cls) not in exported:
                missing.append(f"{name} -> {cls.__name__}")
            if not cls.__name__.endswith("Result") and cls.__name__ not in _NOT_RESULTS:
                misnamed.append(f"{name} -> {cls.__name__}")
    assert missing == [], missing
    assert misnamed == [], misnamed


#: Renamed public names: each old spelling fails with the new one (never an alias that keeps working).
RENAMED_NAMES = {
    "layers": "list_layers",
    "Objective": "objectives.Objective", "channel": "objectives.channel", "neuron": "objectives.neuron",
    "class_logit": "objectives.class_logit", "direction": "objectives.direction",
    "diversity": "objectives.diversity",
    "ActivationMaximization": "ActivationMaximizationResult", "TopActivating": "TopActivatingResult",
    "ComplexityDecomposition": "ComplexityResult", "ShapleyValues": "ShapleyResult", "DeltaCurve": "DeltaCurveResult",
    # LRP rules and canonizers live in their namespaces (nx.Gradient, a rule, read like nx.gradient)
    **{n: f"rules.{n}" for n in ("Rule", "ZeroRule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat",
                                   "WSquare", "Norm", "Pass", "Gradient", "NormIdentity")},
    **{n: f"canonizers.{n}" for n in ("Canonizer", "MergeBatchNorm", "ExplicitResidual", "ExplicitScale", "Scale")},
}

#: Renamed arguments: (callable, old keyword) → new keyword.
RENAMED_ARGUMENTS = {
    ("activations", "eval"): "eval_mode",
    ("layer_statistics", "eval"): "eval_mode",
    ("list_layers", "example"): "inputs",
    ("delta_curve", "x"): "inputs",
    ("delta_curve", "target"): "labels",
    ("projected_outputs", "x"): "inputs",
    ("top_activating", "data"): "inputs",
    ("top_activating", "eval"): "eval_mode",
    ("probe_accuracy", "eval"): "eval_mode",       # new eval_mode=: the builtin's name is refused everywhere
    ("similarity_grid", "eval"): "eval_mode",
    ("maximize_activation", "eval"): "eval_mode",
    ("decompose_complexity", "batch_size"): "train_batch_size",
    ("DeltaExplorer", "data"): "inputs",
    ("DeltaExplorer", "x"): "inputs",
    ("FeatureGallery", "data"): "inputs",
    ("FeatureGallery", "x"): "inputs",
    ("FeatureGallery", "units"): "unit",
    ("ComplexityViewer", "x"): "inputs",
    ("ComplexityViewer", "data"): "inputs",
    ("similarity_grid", "labels"): "checkpoint_labels",   # `labels` are class labels in the vocabulary
    ("model_similarity", "labels"): "model_labels",
    ("ExplanationExplorer", "targets"): "target",
    ("continuity", "x"): "inputs",
    **{(f, "x"): "inputs" for f in ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "rde", "lrp",
                                    "noise_tunnel")},
    **{(f, "eval"): "eval_mode" for f in ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "rde",
                                          "lrp", "noise_tunnel")},
    ("integrated_gradients", "return_error"): "was removed: the result always carries the completeness error as `.error`",
}


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_NAMES.items()))
def test_a_renamed_name_fails_naming_the_new_one(old: str, new: str) -> None:
    assert old not in nx.__all__
    with pytest.raises(AttributeError, match=rf"nx\.{old} was renamed: use nx\.{new}\b"):
        getattr(nx, old)
    obj = nx
    for part in new.split("."):
        obj = getattr(obj, part)  # the new spelling exists
    assert callable(obj)


def test_every_rename_in_nx_is_listed_here() -> None:
    assert {k: v for k, v in nx._RENAMED.items() if k not in _PENDING_ATTRIBUTION} == RENAMED_NAMES


def _by_name(name: str) -> Callable[..., object]:
    return getattr(nxw, name) if name in nxw.__all__ else getattr(nx, name)


@pytest.mark.parametrize(("where", "new"), sorted(RENAMED_ARGUMENTS.items()))
def test_a_renamed_argument_fails_naming_the_new_one(where: tuple[str, str], new: str) -> None:
    name, old = where
    obj = _by_name(name)
    fix = f"is now `{new}=`" if new.isidentifier() else new  # a sentence for an argument that was removed
    with pytest.raises(TypeError, match=rf"^{name}\(\): `{old}=` {re.escape(fix)}"):
        obj(**{old: None})
    assert old not in inspect.signature(obj).parameters


def test_every_renamed_argument_is_listed_here() -> None:
    """The decorator's own table and RENAMED_ARGUMENTS agree, so none is added or dropped silently."""
    declared = {}
    for name, obj in _public():
        fn = obj.__init__ if inspect.isclass(obj) else obj
        for old, new in getattr(fn, "__renamed_arguments__", {}).items():
            declared[(name, old)] = new
    assert declared == RENAMED_ARGUMENTS


def test_the_old_positional_orders_fail_with_the_new_order() -> None:
    """The calls whose order changed are refused with the new order, never run with arguments swapped."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    x = torch.rand(4, 1, 6, 6)
    with pytest.raises(TypeError, match=r"top_activating\(model, inputs, layer, unit=None"):
        nx.top_activating(net, "1", [0], x)
    with pytest.raises(TypeError, match=r"kinds='conv'"):
        nx.list_layers(net, "conv")
    with pytest.raises(TypeError, match=r"decompose_complexity\(model, train, test, layer"):
        nx.decompose_complexity(net, "1", (x, torch.zeros(4)), (x, torch.zeros(4)))
    with pytest.raises(TypeError, match=r"FeatureGallery\(model, inputs, layer, unit=None"):
        nxw.FeatureGallery(net, "1", [0])


def test_objectives_live_in_their_namespace() -> None:
    assert set(nx.objectives.__all__) == {"Objective", "channel", "neuron", "class_logit", "direction", "diversity"}
    assert isinstance(nx.objectives.channel("fc", 0), nx.objectives.Objective)


def test_every_public_name_has_a_docstring_with_an_example_or_is_a_plain_type() -> None:
    """Functions carry a runnable example (tests/test_docstrings.py runs them); every name has a docstring."""
    public = [(n, getattr(nx, n)) for n in nx.__all__ if callable(getattr(nx, n, None))]
    no_doc = [n for n, obj in public if not (inspect.getdoc(obj) or "").strip()]
    assert no_doc == [], no_doc
    no_example = [n for n, obj in public if inspect.isfunction(obj) and ">>>" not in (inspect.getdoc(obj) or "")]
    assert no_example == [], no_example


def test_the_exported_result_types_are_the_returned_ones() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.rand(16, 4)
    stats = nx.layer_statistics(net, x, ["0"])["0"]
    curve = nx.delta_curve(net, x, "0", stats, deltas=[0.9, 1.0], metric="agreement")
    assert isinstance(curve, nx.DeltaCurveResult)
    top = nx.top_activating(net, x, "0", [1], k=2)
    assert isinstance(top, nx.TopActivatingResult)
    with nx.preserved(net) as snap:
        assert isinstance(snap, nx.ModelSnapshot)
