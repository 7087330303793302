"""Playground core against float64 references written from the definitions.

Data sets (geometry, class balance, split, seeds; scikit-learn's moons and circles when installed), feature maps,
surfaces (softmax of a hand-written float64 forward), neuron maps, the relevance field (LRP-ε layer by layer with
its conservation law, gradient × input by central differences), δ-projected surfaces (projection onto the top-k
eigenvectors of a covariance computed by hand), the trainer (SGD with weight decay by hand, bit-identical rewind,
saturation from hand covariances), CKA over training, hygiene and every bad argument.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.playground import FEATURES, PlaneSampler, SelectedOutput, layer_activations
from nbexplain.core.playground.plane import forward_layers
from tests.models.state import dress, untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ----------------------------------------------------------------------------------------------- references


def ref_features(points: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    x, y = points[:, 0].double(), points[:, 1].double()
    table = {"x": x, "y": y, "x^2": x**2, "y^2": y**2, "xy": x * y, "sin x": torch.sin(x), "sin y": torch.sin(y)}
    return torch.stack([table[f] for f in features], 1)


def ref_activation(kind: nn.Module, z: torch.Tensor) -> torch.Tensor:
    if isinstance(kind, nn.Tanh):
        return (z.exp() - (-z).exp()) / (z.exp() + (-z).exp())
    if isinstance(kind, nn.ReLU):
        return z.clamp_min(0)
    if isinstance(kind, nn.Sigmoid):
        return 1 / (1 + (-z).exp())
    if isinstance(kind, nn.GELU):
        return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))
    raise AssertionError(kind)


def ref_forward(net: nn.Sequential, points: torch.Tensor, project: tuple[str, torch.Tensor, torch.Tensor] | None = None):
    """float64 forward of a playground network: (logits, {layer: output}, [(a_in, z, W, b) per Linear]).

    ``project=(layer, mean, basis)`` replaces that layer's output h by mean + (h − mean) P Pᵀ."""
    h = ref_features(points, net.features.features)
    outs, lins = {"features": h}, []
    for name, mod in list(net.named_children())[1:]:
        if isinstance(mod, nn.Linear):
            w, b = mod.weight.detach().double(), mod.bias.detach().double()
            z = h @ w.T + b
            lins.append((h, z, w, b))
            h = z
        else:
            h = ref_activation(mod, h)
        if project is not None and project[0] == name:
            mu, p = project[1], project[2]
            h = mu + (h - mu) @ p @ p.T
        outs[name] = h
    return h, outs, lins


def ref_softmax(z: torch.Tensor) -> torch.Tensor:
    e = (z - z.max(1, keepdim=True).values).exp()
    return e / e.sum(1, keepdim=True)


def as_image(t: torch.Tensor, r: int) -> torch.Tensor:
    return t.T.reshape(t.shape[1], r, r)


def ref_lrp_epsilon(lins, logits: torch.Tensor, target: torch.Tensor, eps: float):
    """LRP-ε layer by layer: R_i = Σ_j a_i w_ji / (z_j + ε sign z_j) R_j; also the shares the biases and ε keep."""
    rel = torch.zeros_like(logits)
    rel[torch.arange(len(target)), target] = logits[torch.arange(len(target)), target]
    kept = torch.zeros(len(target), dtype=torch.float64)
    for a, z, w, b in reversed(lins):
        den = z + eps * torch.where(z >= 0, 1.0, -1.0)
        s = rel / den
        kept += ((b + eps * torch.where(z >= 0, 1.0, -1.0)) * s).sum(1)
        rel = a * (s @ w)
    return rel, kept


def ref_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    return float((yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))


# ----------------------------------------------------------------------------------------------- data sets


@pytest.mark.parametrize("name, classes", [("moons", 2), ("circles", 2), ("xor", 2), ("spiral", 3), ("spiral", 2),
                                           ("blobs", 4)])
def test_dataset_balance_split_and_dtypes(name, classes):
    n, tf = 301, 0.3
    d = nx.toy_dataset(name, n, classes=classes, test_fraction=tf, seed=3)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.shape == (n - round(n * tf), 2) and d.x_test.shape == (round(n * tf), 2)
    assert d.name == name and d.classes == classes
    counts = torch.bincount(d.y, minlength=classes).tolist()
    assert counts == [n // classes + (c < n % classes) for c in range(classes)]
    # the split partitions the points: no point is both train and test
    allpts = torch.cat([d.x_train, d.x_test])
    assert len(torch.unique(allpts, dim=0)) == n
    # the extent is square, holds every point, with a margin of 10 % of the larger span
    xmin, xmax, ymin, ymax = d.extent
    assert math.isclose(xmax - xmin, ymax - ymin, rel_tol=1e-9)
    span = float((allpts.max(0).values - allpts.min(0).values).max())
    assert math.isclose(xmax - xmin, 1.2 * span, rel_tol=1e-5)
    assert float(allpts[:, 0].min()) >= xmin and float(allpts[:, 0].max()) <= xmax
    assert float(allpts[:, 1].min()) >= ymin and float(allpts[:, 1].max()) <= ymax


@pytest.mark.parametrize("name", ["moons", "circles", "xor", "spiral", "blobs"])
def test_dataset_seeds(name):
    a, b = nx.toy_dataset(name, 200, seed=5), nx.toy_dataset(name, 200, seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = nx.toy_dataset(name, 200, seed=6)
    assert not torch.equal(a.x_train, c.x_train)
    state = torch.random.get_rng_state()
    nx.toy_dataset(name, 50, seed=1)
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG must not be used"


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x[torch.argsort(x[:, 0] * 1e3 + x[:, 1])]


def _by_class(d):
    return [_sorted_rows(d.x[d.y == c]) for c in range(d.classes)]


def test_moons_geometry():
    d = nx.toy_dataset("moons", 200, noise=0.0)
    upper, lower = _by_class(d)
    t = torch.linspace(0, math.pi, 100, dtype=torch.float64)
    torch.testing.assert_close(upper, _sorted_rows(torch.stack([t.cos(), t.sin()], 1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(lower, _sorted_rows(torch.stack([1 - t.cos(), 1 - t.sin() - 0.5], 1)), atol=1e-6,
                               rtol=0)


def test_moons_and_circles_match_sklearn():
    datasets = pytest.importorskip("sklearn.datasets")
    for name, make in (("moons", datasets.make_moons), ("circles", lambda **k: datasets.make_circles(factor=0.5, **k))):
        x, y = make(n_samples=200, noise=0.0, shuffle=False)
        d = nx.toy_dataset(name, 200, noise=0.0)
        for c in (0, 1):
            torch.testing.assert_close(_by_class(d)[c], _sorted_rows(torch.as_tensor(x[y == c])), atol=1e-6, rtol=0)


def test_circles_xor_spiral_blobs_geometry():
    d = nx.toy_dataset("circles", 200, noise=0.0)
    r = d.x.double().norm(dim=1)
    torch.testing.assert_close(r[d.y == 0], torch.ones(100, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(r[d.y == 1], torch.full((100,), 0.5, dtype=torch.float64), atol=1e-6, rtol=0)

    d = nx.toy_dataset("xor", 400, noise=0.0, seed=2)
    prod = d.x[:, 0] * d.x[:, 1]
    assert bool((prod[d.y == 0] > 0).all()) and bool((prod[d.y == 1] < 0).all())
    assert float(d.x.abs().min()) >= 0.05 - 1e-7 and float(d.x.abs().max()) <= 1.0
    # every quadrant is populated
    assert len({(bool(a > 0), bool(b > 0)) for a, b in d.x}) == 4

    k, m = 3, 60
    d = nx.toy_dataset("spiral", k * m, noise=0.0, classes=k)
    for c in range(k):
        pts = d.x[d.y == c].double()
        radius = pts.norm(dim=1)
        order = radius.argsort()
        t = torch.linspace(0, 1, m, dtype=torch.float64)
        torch.testing.assert_close(radius[order], t, atol=1e-6, rtol=0)
        theta = torch.atan2(pts[order, 0], pts[order, 1])[1:]  # (x, y) = r (sin θ, cos θ)
        want = 3.5 * math.pi * t[1:] + 2 * math.pi * c / k
        diff = torch.remainder(theta - want + math.pi, 2 * math.pi) - math.pi
        assert float(diff.abs().max()) < 1e-4

    d = nx.toy_dataset("blobs", 4000, noise=0.0, classes=4, seed=1)
    for c in range(4):
        pts = d.x[d.y == c].double()
        a = 2 * math.pi * c / 4
        centre = torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64) * 1.5
        assert float((pts.mean(0) - centre).norm()) < 4 * 0.3 / math.sqrt(len(pts))
        assert abs(float(pts.std(0).mean()) - 0.3) < 0.03


def test_noise_is_gaussian_of_the_given_std():
    clean = nx.toy_dataset("moons", 4000, noise=0.0, seed=4)
    noisy = nx.toy_dataset("moons", 4000, noise=0.2, seed=4)  # same points and split, noise added
    resid = (noisy.x - clean.x).double()
    assert abs(float(resid.std()) - 0.2) < 0.01 and abs(float(resid.mean())) < 0.01


def test_as_toy_dataset():
    x = torch.randn(50, 2, dtype=torch.float64)
    y = torch.arange(50) % 3
    d = nx.as_toy_dataset(x.numpy(), y.numpy(), test_fraction=0.2, seed=1)
    assert d.name == "custom" and d.classes == 3 and len(d.y_test) == 10
    pairs = {(round(float(a), 5), round(float(b), 5), int(c)) for (a, b), c in zip(d.x, d.y, strict=True)}
    assert pairs == {(round(float(a), 5), round(float(b), 5), int(c)) for (a, b), c in zip(x, y, strict=True)}
    assert nx.as_toy_dataset(x, y.double()).classes == 3  # integral floats are labels
    assert torch.equal(nx.as_toy_dataset(x, y, seed=2).x_train, nx.as_toy_dataset(x, y, seed=2).x_train)


# ----------------------------------------------------------------------------------------------- network


def test_feature_map_values():
    pts = torch.randn(40, 2)
    fm = nx.FeatureMap(FEATURES)
    torch.testing.assert_close(fm(pts).double(), ref_features(pts, FEATURES), atol=1e-6, rtol=1e-6)
    assert nx.FeatureMap(("xy", "x")).features == ("xy", "x")


def test_playground_network_structure_and_seed():
    state = torch.random.get_rng_state()
    net = nx.playground_network(("x", "y", "sin x"), (5, 4, 3), 3, activation="relu", seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [n for n, _ in net.named_children()] == ["features", "fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]
    assert net.fc1.in_features == 3 and net.out.out_features == 3 and isinstance(net.act2, nn.ReLU)
    again = nx.playground_network(("x", "y", "sin x"), (5, 4, 3), 3, activation="relu", seed=7)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    other = nx.playground_network(("x", "y", "sin x"), (5, 4, 3), 3, activation="relu", seed=8)
    assert not torch.equal(net.fc1.weight, other.fc1.weight)
    linear = nx.playground_network(hidden=())
    assert [n for n, _ in linear.named_children()] == ["features", "out"]
    assert nx.hidden_layers(linear) == ["out"]
    assert nx.hidden_layers(net) == ["act1", "act2", "act3", "out"]


class UserNet(nn.Module):
    """A user's own 2-input model (not a playground Sequential)."""

    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(2, 6)
        self.act = act if act is not None else nn.Tanh()
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x)))


def test_hidden_layers_of_user_models():
    assert nx.hidden_layers(UserNet()) == ["act", "b"]
    lin = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 2))
    assert nx.hidden_layers(lin) == ["0", "1"]
    head_act = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    assert nx.hidden_layers(head_act) == ["1", "3"]


# ----------------------------------------------------------------------------------------------- the plane


def test_plane_grid_layout():
    g = nx.plane_grid((-1.0, 3.0, 0.0, 2.0), 5)
    assert g.shape == (25, 2) and g.dtype == torch.float32
    img = g.reshape(5, 5, 2)
    assert img[0, 0].tolist() == [-1.0, 2.0] and img[0, -1].tolist() == [3.0, 2.0]  # top row = ymax
    assert img[-1, 0].tolist() == [-1.0, 0.0] and img[-1, -1].tolist() == [3.0, 0.0]
    assert torch.allclose(img[2, :, 0], torch.linspace(-1, 3, 5)) and torch.allclose(img[:, 1, 1], torch.linspace(2, 0, 5))
    assert torch.equal(nx.plane_grid(nx.toy_dataset("xor", 40), 3), nx.plane_grid(nx.toy_dataset("xor", 40).extent, 3))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "gelu"])
def test_surface_and_neuron_maps_equal_float64_forward(activation):
    data = nx.toy_dataset("moons", 100)
    net = nx.playground_network(("x", "y", "x^2", "xy", "sin y"), (6, 5), 3, activation=activation, seed=1)
    r = 12
    pts = nx.plane_grid(data.extent, r)
    logits, outs, _ = ref_forward(net, pts)
    with untouched(net):
        surf = nx.decision_surface(net, data.extent, r)
        maps = nx.neuron_maps(net, data.extent, r)
    assert surf.shape == (3, r, r) and surf.dtype == torch.float32
    torch.testing.assert_close(surf.double(), as_image(ref_softmax(logits), r), atol=1e-6, rtol=1e-5)
    assert list(maps) == ["act1", "act2", "out"]
    for name, m in maps.items():
        torch.testing.assert_close(m.double(), as_image(outs[name], r), atol=1e-5, rtol=1e-5)
    only = nx.neuron_maps(net, data.extent, r, layers="fc1")
    torch.testing.assert_close(only["fc1"].double(), as_image(outs["fc1"], r), atol=1e-5, rtol=1e-5)


def test_fast_path_equals_the_hooked_path():
    """A playground network with a user's hook runs through module calls and hooks (the generic path): the same
    surface, maps and relevance as the module-by-module fast path, and the user's hook sees every pass."""
    net, data, _ = _trained(("x", "y", "xy"), (5, 4))
    fast = (nx.decision_surface(net, data.extent, 8), nx.neuron_maps(net, data.extent, 8),
            nx.relevance_field(net, data.extent, 8))
    calls = dress(net, "fc1")
    with untouched(net):
        slow = (nx.decision_surface(net, data.extent, 8), nx.neuron_maps(net, data.extent, 8),
                nx.relevance_field(net, data.extent, 8))
    torch.testing.assert_close(slow[0], fast[0])
    assert list(slow[1]) == list(fast[1])
    for name in fast[1]:
        torch.testing.assert_close(slow[1][name], fast[1][name])
    # the hooked path explains the layers after the feature map with nx.lrp itself, on the features
    torch.testing.assert_close(slow[2].feature_relevance, fast[2].feature_relevance, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(slow[2].relevance, fast[2].relevance, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(slow[2].output, fast[2].output)
    assert torch.equal(slow[2].target, fast[2].target) and slow[2].features == fast[2].features
    gxi = nx.relevance_field(net, data.extent, 8, method="gradient_x_input")
    dress_free = nx.playground_network(("x", "y", "xy"), (5, 4))
    dress_free.load_state_dict(net.state_dict())
    torch.testing.assert_close(gxi.relevance, nx.relevance_field(dress_free, data.extent, 8,
                                                                 method="gradient_x_input").relevance)
    assert calls["forward"] >= 2


def test_user_model_surface_and_hygiene():
    net = UserNet()
    calls = dress(net, "b")
    net.train()
    r = 9
    pts = nx.plane_grid((-2, 2, -2, 2), r).double()
    wa, ba, wb, bb = (t.detach().double() for t in (net.a.weight, net.a.bias, net.b.weight, net.b.bias))
    logits = torch.tanh(pts @ wa.T + ba) @ wb.T + bb
    with untouched(net):
        surf = nx.decision_surface(net, (-2, 2, -2, 2), r)
        maps = nx.neuron_maps(net, (-2, 2, -2, 2), r)
    torch.testing.assert_close(surf.double(), as_image(ref_softmax(logits), r), atol=1e-5, rtol=1e-5)
    assert list(maps) == ["act", "b"] and maps["act"].shape == (6, r, r)
    assert calls["forward"] == 2  # the user's own hook saw each call's forward pass


class TupleNet(UserNet):
    """A user's model that returns (logits, hidden)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        h = self.act(self.a(x))
        return self.b(h), h


def test_user_model_maps_through_capture_equal_float64_forward():
    """Any model's layer outputs are read through nx.capture: equal to a float64 forward, hooks all removed."""
    net = UserNet()
    calls = dress(net, "b")
    r = 7
    pts = nx.plane_grid((-1, 2, -2, 1), r).double()
    wa, ba, wb, bb = (t.detach().double() for t in (net.a.weight, net.a.bias, net.b.weight, net.b.bias))
    hidden = torch.tanh(pts @ wa.T + ba)
    with untouched(net):
        maps = nx.neuron_maps(net, (-1, 2, -2, 1), r)
        logits, outs = forward_layers(net, nx.plane_grid((-1, 2, -2, 1), r), ["a", "act"])
    torch.testing.assert_close(maps["act"].double(), as_image(hidden, r), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps["b"].double(), as_image(hidden @ wb.T + bb, r), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(outs["a"].double(), pts @ wa.T + ba, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits.double(), hidden @ wb.T + bb, atol=1e-6, rtol=1e-5)
    assert calls["forward"] == 2
    with pytest.raises(ValueError, match=r"`layers` \['nope'\]|nope"):
        forward_layers(net, pts.float(), ["nope"])


@pytest.mark.parametrize("make", [lambda: nx.playground_network(("x", "y", "xy"), (5, 4), 3, seed=2), UserNet])
def test_plane_sampler_equals_the_core_functions(make):
    """A run's PlaneSampler (grids and checked model kept) gives exactly what the one-off functions give."""
    net = make()
    ext = (-1.5, 2.0, -1.0, 1.0)
    plane = PlaneSampler(net, ext)
    with untouched(net):
        assert torch.equal(plane.surface(12), nx.decision_surface(net, ext, 12))
        got, want = plane.neuron_maps(6), nx.neuron_maps(net, ext, 6)
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
        for method in ("lrp", "gradient_x_input"):
            a, b = plane.relevance(8, method), nx.relevance_field(net, ext, 8, method=method)
            assert torch.equal(a.relevance, b.relevance) and torch.equal(a.output, b.output)
        pts = torch.randn(20, 2, generator=torch.Generator().manual_seed(1))
        assert torch.equal(plane.predict(pts), forward_layers(net, pts)[0].argmax(1))
    assert plane.grid(12) is plane.grid(12) and torch.equal(plane.grid(5), nx.plane_grid(ext, 5))
    with pytest.raises(ValueError, match="`method` must be one of"):
        plane.relevance(8, "saliency")
    with pytest.raises(TypeError, match="`extent` must be"):
        PlaneSampler(net, (0, 1))


def test_a_tuple_model_needs_output_and_selected_output_gives_its_logits():
    net = TupleNet()
    pts = nx.plane_grid((-2, 2, -2, 2), 5)
    with untouched(net), pytest.raises(ValueError, match=r"returned tuple of 2: \[0\] Tensor\(25, 3\).*`output=`"):
        nx.decision_surface(net, (-2, 2, -2, 2), 5)
    sel = SelectedOutput(net, 0)
    wa, ba, wb, bb = (t.detach().double() for t in (net.a.weight, net.a.bias, net.b.weight, net.b.bias))
    logits = torch.tanh(pts.double() @ wa.T + ba) @ wb.T + bb
    with untouched(net):
        surf = nx.decision_surface(sel, (-2, 2, -2, 2), 5)
    torch.testing.assert_close(surf.double(), as_image(ref_softmax(logits), 5), atol=1e-5, rtol=1e-5)
    assert nx.hidden_layers(sel) == ["model.act", "model.b"] and sel.model is net
    data = nx.toy_dataset("blobs", 90, classes=3, seed=0)
    trainer = nx.PlaygroundTrainer(SelectedOutput(net, lambda out: out[0]), data, learning_rate=0.1)
    before = net.a.weight.detach().clone()
    trainer.run_epoch()
    assert not torch.equal(before, net.a.weight)  # training the selection trains the model itself
    with pytest.raises(ValueError, match="`output` must choose the logits"):
        SelectedOutput(net, None)
    with pytest.raises(TypeError, match="`model` must be an nn.Module"):
        SelectedOutput("net", 0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- relevance


def _trained(features=("x", "y"), hidden=(8, 8), activation="tanh", name="moons", epochs=3, seed=0, classes=2):
    data = nx.toy_dataset(name, 200, classes=classes, seed=seed)
    net = nx.playground_network(features, hidden, classes, activation=activation, seed=seed)
    trainer = nx.PlaygroundTrainer(net, data, learning_rate=0.1, seed=seed)
    for _ in range(epochs):
        trainer.run_epoch()
    return net, data, trainer


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("features", [("x", "y"), ("x", "y", "x^2", "y^2", "xy", "sin x", "sin y")])
def test_relevance_field_lrp_equals_layer_by_layer_reference(features, activation):
    net, data, _ = _trained(features, (6, 5), activation, classes=3, name="spiral")
    r, eps = 10, 0.01
    pts = nx.plane_grid(data.extent, r)
    logits, _, lins = ref_forward(net, pts)
    target = logits.argmax(1)
    rel, kept = ref_lrp_epsilon(lins, logits, target, eps)
    with untouched(net):
        res = nx.relevance_field(net, data.extent, r, epsilon=eps)
    assert res.relevance.shape == (2, r, r) and res.feature_relevance.shape == (len(features), r, r)
    assert res.features == features and res.method == "lrp"
    torch.testing.assert_close(res.feature_relevance.double(), as_image(rel, r), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(res.target, target.reshape(r, r))
    out = logits[torch.arange(len(target)), target]
    torch.testing.assert_close(res.output.double(), out.reshape(r, r), atol=1e-5, rtol=1e-5)
    # conservation: Σ R over the inputs = the explained logit − what the biases (and ε) kept, layer by layer
    torch.testing.assert_close(res.total.double(), (out - kept).reshape(r, r), atol=5e-5, rtol=1e-4)
    # each feature's relevance goes to the raw input(s) it is made of (xy: half to each)
    share = {"x": (1, 0), "y": (0, 1), "x^2": (1, 0), "y^2": (0, 1), "xy": (0.5, 0.5), "sin x": (1, 0), "sin y": (0, 1)}
    mix = torch.tensor([share[f] for f in features], dtype=torch.float64)  # (F, 2)
    raw = torch.einsum("fk,fij->kij", mix, res.feature_relevance.double())
    torch.testing.assert_close(res.relevance.double(), raw, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(res.total, res.relevance.sum(0))


def test_relevance_conservation_without_biases():
    net, data, _ = _trained(hidden=(6,))
    with torch.no_grad():
        net.fc1.bias.zero_()
        net.out.bias.zero_()
    res = nx.relevance_field(net, data.extent, 8, epsilon=1e-9)
    torch.testing.assert_close(res.total, res.output, atol=1e-4, rtol=1e-4)


def test_closed_form_lrp_equals_nx_lrp():
    net, data, _ = _trained(("x", "y", "xy", "sin x"), (8, 8))
    r = 16
    pts = nx.plane_grid(data.extent, r)
    head = nn.Sequential(*list(net.children())[1:])
    feats = net.features(pts)
    want = nx.lrp(head, feats, None, composite="epsilon", epsilon=0.01).attribution
    res = nx.relevance_field(net, data.extent, r, epsilon=0.01)
    torch.testing.assert_close(res.feature_relevance, as_image(want, r), atol=1e-5, rtol=1e-4)


def test_user_model_relevance_goes_through_nx_lrp():
    user = UserNet()
    calls = dress(user, "b")
    r = 7
    pts = nx.plane_grid((-2, 2, -2, 2), r).double()
    wa, ba, wb, bb = (t.detach().double() for t in (user.a.weight, user.a.bias, user.b.weight, user.b.bias))
    z1 = pts @ wa.T + ba
    logits = torch.tanh(z1) @ wb.T + bb
    rel, _ = ref_lrp_epsilon([(pts, z1, wa, ba), (torch.tanh(z1), logits, wb, bb)], logits, logits.argmax(1), 0.01)
    with untouched(user):
        res = nx.relevance_field(user, (-2, 2, -2, 2), r)
        gxi = nx.relevance_field(user, (-2, 2, -2, 2), r, method="gradient_x_input", target=1)
    torch.testing.assert_close(res.relevance.double(), as_image(rel, r), atol=2e-5, rtol=1e-4)
    assert bool((gxi.target == 1).all())
    assert calls["forward"] >= 2


def _finite_difference_gxi(net, pts, target, h=1e-5):
    """x_f · ∂logit_t/∂x_f by central differences on the float64 network, per input feature."""
    feats = ref_features(pts, net.features.features)
    head = [(m.weight.detach().double(), m.bias.detach().double()) if isinstance(m, nn.Linear) else m
            for m in list(net.children())[1:]]

    def f(v):
        for m in head:
            v = v @ m[0].T + m[1] if isinstance(m, tuple) else ref_activation(m, v)
        return v[torch.arange(len(v)), target]

    grads = []
    for j in range(feats.shape[1]):
        e = torch.zeros_like(feats)
        e[:, j] = h
        grads.append((f(feats + e) - f(feats - e)) / (2 * h))
    return feats * torch.stack(grads, 1)


@pytest.mark.parametrize("features", [("x", "y"), ("x", "y", "x^2", "xy", "sin y")])
def test_gradient_x_input_equals_finite_differences(features):
    net, data, _ = _trained(features, (6, 4), "tanh")
    r = 9
    pts = nx.plane_grid(data.extent, r)
    logits, _, _ = ref_forward(net, pts)
    with untouched(net):
        res = nx.relevance_field(net, data.extent, r, method="gradient_x_input")
        fixed = nx.relevance_field(net, data.extent, r, method="gradient_x_input", target=0)
    want = _finite_difference_gxi(net, pts, logits.argmax(1))
    torch.testing.assert_close(res.feature_relevance.double(), as_image(want, r), atol=1e-4, rtol=1e-3)
    want0 = _finite_difference_gxi(net, pts, torch.zeros(r * r, dtype=torch.long))
    torch.testing.assert_close(fixed.feature_relevance.double(), as_image(want0, r), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(fixed.output.double(), logits[:, 0].reshape(r, r), atol=1e-5, rtol=1e-5)
    assert all(p.grad is None for p in net.parameters())


# ----------------------------------------------------------------------------------------------- δ projection


def _hand_eigenbasis(net, x, layer):
    """Mean and eigenvectors (descending eigenvalues) of the layer's float64 outputs, computed by hand."""
    _, outs, _ = ref_forward(net, x)
    h = outs[layer]
    mu = h.mean(0)
    cov = (h - mu).T @ (h - mu) / len(h)
    vals, vecs = torch.linalg.eigh(cov)
    return mu, vecs.flip(1), vals.flip(0)


@pytest.mark.parametrize("layer", ["act1", "act2"])
def test_projected_surface_equals_hand_projection(layer):
    net, data, _ = _trained(("x", "y", "xy"), (8, 6), "tanh", name="xor")
    r = 10
    stats = nx.layer_statistics(net, data.x_train, [layer])[layer]
    mu, vecs, vals = _hand_eigenbasis(net, data.x_train, layer)
    pts = nx.plane_grid(data.extent, r)
    width = vecs.shape[1]
    with untouched(net):
        every = nx.projected_surfaces(net, layer, stats, extent=data.extent, resolution=r)
    assert every.shape == (width, 2, r, r)
    gaps = vals[:-1] - vals[1:]
    for k in range(1, width + 1):
        if k < width and float(gaps[k - 1]) < 1e-6 * float(vals[0]):
            continue  # a degenerate eigenvalue pair: the top-k subspace is not unique
        logits, _, _ = ref_forward(net, pts, (layer, mu, vecs[:, :k]))
        got = nx.projected_surface(net, layer, stats, k=k, extent=data.extent, resolution=r)
        torch.testing.assert_close(got.double(), as_image(ref_softmax(logits), r), atol=2e-4, rtol=1e-3)
        torch.testing.assert_close(every[k - 1], got)
    # all directions kept: the projection is the identity
    torch.testing.assert_close(every[-1], nx.decision_surface(net, data.extent, r), atol=1e-5, rtol=1e-5)


def test_projected_surface_random_basis_and_generic_path():
    net, data, _ = _trained(hidden=(6,))
    r = 8
    stats = nx.layer_statistics(net, data.x_train, ["act1"])["act1"]
    proj = nx.DeltaProjection(stats, k=2, subspace="random", seed=3)
    p = proj.basis.double()
    assert torch.allclose(p.T @ p, torch.eye(2, dtype=torch.float64), atol=1e-10)
    logits, _, _ = ref_forward(net, nx.plane_grid(data.extent, r), ("act1", stats.mean.double(), p))
    got = nx.projected_surface(net, "act1", stats, k=2, extent=data.extent, resolution=r, basis="random", seed=3)
    torch.testing.assert_close(got.double(), as_image(ref_softmax(logits), r), atol=1e-4, rtol=1e-3)
    eigen = nx.projected_surface(net, "act1", stats, k=2, extent=data.extent, resolution=r)
    assert not torch.allclose(eigen, got, atol=1e-3)

    # a model that is not a playground Sequential takes the hook path (DeltaProjection.inserted): same result
    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    wrapped = Wrapped(net)
    calls = dress(wrapped, None, backward=False)
    with untouched(wrapped):
        via_hooks = nx.projected_surfaces(wrapped, "inner.act1", stats, extent=data.extent, resolution=r)
        one = nx.projected_surface(wrapped, "inner.act1", stats, k=2, extent=data.extent, resolution=r,
                                   basis="random", seed=3)
    torch.testing.assert_close(via_hooks, nx.projected_surfaces(net, "act1", stats, extent=data.extent, resolution=r),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one, got, atol=1e-6, rtol=1e-5)
    assert calls["forward"] == 7


# ----------------------------------------------------------------------------------------------- trainer


def test_one_sgd_step_with_weight_decay_by_hand():
    data = nx.toy_dataset("circles", 60, seed=1)
    net = nx.playground_network(("x", "y", "xy"), (4,), seed=2)
    before = {k: v.detach().double().clone() for k, v in net.named_parameters()}
    lr, l2, bs = 0.2, 0.05, 7
    trainer = nx.PlaygroundTrainer(net, data, learning_rate=lr, l2=l2, batch_size=bs, seed=9)
    trainer.step()
    idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(9))[:bs]
    params = {k: v.clone().requires_grad_(True) for k, v in before.items()}
    h = ref_features(data.x_train[idx], net.features.features)
    h = torch.tanh(h @ params["fc1.weight"].T + params["fc1.bias"])
    logits = h @ params["out.weight"].T + params["out.bias"]
    loss = -(logits.log_softmax(1)[torch.arange(bs), data.y_train[idx]]).mean()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    for k, p in net.named_parameters():
        decay = l2 * before[k] if before[k].ndim >= 2 else 0.0  # L2 on the weight matrices, not on biases
        torch.testing.assert_close(p.detach().double(), before[k] - lr * (grads[k] + decay), atol=1e-6, rtol=1e-5)
    assert trainer.steps == 1 and trainer.epoch == 0 and all(p.grad is None for p in net.parameters())


def test_epochs_steps_and_metrics():
    data = nx.toy_dataset("moons", 100, seed=0)  # 70 train points
    net = nx.playground_network(hidden=(5,))
    trainer = nx.PlaygroundTrainer(net, data, batch_size=16)
    trainer.step(3)
    assert trainer.epoch == 0 and trainer.steps == 3
    m = trainer.run_epoch()  # finishes the epoch under way: 70 points → 5 minibatches
    assert trainer.steps == 5 and trainer.epoch == 1 and m.epoch == 1
    trainer.step(6)  # crosses into the third epoch
    assert trainer.epoch == 2 and trainer.steps == 11 and len(trainer.history) == 2
    with torch.no_grad():
        for x, y, loss, acc in ((data.x_train, data.y_train, "train_loss", "train_accuracy"),
                                (data.x_test, data.y_test, "test_loss", "test_accuracy")):
            logits, _, _ = ref_forward(net, x)
            want = -(logits.log_softmax(1)[torch.arange(len(y)), y]).mean()
            ev = trainer.evaluate()
            assert math.isclose(getattr(ev, loss), float(want), rel_tol=1e-5)
            assert math.isclose(getattr(ev, acc), float((logits.argmax(1) == y).double().mean()), abs_tol=1e-12)


def test_rewind_restores_bit_identical_training():
    data = nx.toy_dataset("spiral", 150, classes=3, seed=1)
    net = nx.playground_network(("x", "y", "sin x"), (6, 6), 3, seed=4)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = nx.PlaygroundTrainer(net, data, learning_rate=0.05, l2=0.001, batch_size=8, seed=2)
    params = list(net.parameters())

    def run():
        trainer.step(5)
        for _ in range(3):
            trainer.run_epoch()
        return ({k: v.clone() for k, v in net.state_dict().items()}, list(trainer.history),
                [dict(s) for s in trainer.saturation], trainer.steps)

    first = run()
    trainer.rewind()
    assert all(torch.equal(v, initial[k]) for k, v in net.state_dict().items())
    assert trainer.epoch == 0 and trainer.steps == 0 and trainer.history == [] and len(trainer.snapshots) == 1
    second = run()
    assert all(torch.equal(first[0][k], second[0][k]) for k in first[0])
    assert first[1:] == second[1:]
    assert all(a is b for a, b in zip(params, net.parameters(), strict=True)), "rewind must keep the Parameter objects"
    assert not all(torch.equal(first[0][k], initial[k]) for k in initial)
    # the same as a fresh trainer on a fresh network of the same seeds
    fresh_net = nx.playground_network(("x", "y", "sin x"), (6, 6), 3, seed=4)
    fresh = nx.PlaygroundTrainer(fresh_net, data, learning_rate=0.05, l2=0.001, batch_size=8, seed=2)
    fresh.step(5)
    for _ in range(3):
        fresh.run_epoch()
    assert all(torch.equal(first[0][k], v) for k, v in fresh_net.state_dict().items())
    other = nx.PlaygroundTrainer(nx.playground_network(("x", "y", "sin x"), (6, 6), 3, seed=4), data,
                                 learning_rate=0.05, l2=0.001, batch_size=8, seed=3)
    other.run_epoch()
    assert not torch.equal(other.model.fc1.weight, first[0]["fc1.weight"])


def test_saturation_from_hand_covariance():
    data = nx.toy_dataset("moons", 300, seed=0)
    net = nx.playground_network(hidden=(8, 8), seed=1)
    seen: dict[str, list[torch.Tensor]] = {"act1": [], "act2": []}

    def keep(name):
        def hook(m, i, o):
            if m.training:
                seen[name].append(o.detach().double().clone())
        return hook

    handles = [getattr(net, n).register_forward_hook(keep(n)) for n in seen]
    delta = 0.97
    trainer = nx.PlaygroundTrainer(net, data, learning_rate=0.3, batch_size=10, delta=delta)
    trainer.run_epoch()
    assert trainer.layers == ["act1", "act2"]
    for name, batches in seen.items():
        h = torch.cat(batches)
        assert len(h) == len(data.y_train)
        mu = h.mean(0)
        cov = (h - mu).T @ (h - mu) / len(h)
        vals = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)
        k = int((vals.cumsum(0) < delta * vals.sum()).sum()) + 1
        assert trainer.saturation[0][name] == k / 8 == nx.saturation(vals, delta)
        stats = trainer.layer_statistics()[name]
        torch.testing.assert_close(stats.covariance.cpu(), cov, atol=1e-7, rtol=1e-6)  # float32 blocks
    for h in handles:
        h.remove()


def test_trainer_leaves_modes_hooks_and_flags_as_found():
    user = UserNet()
    calls = dress(user, "b")  # the user's forward and backward hooks, first parameter frozen
    frozen = user.a.weight.detach().clone()
    user.eval()
    data = nx.as_toy_dataset(torch.randn(80, 2), torch.arange(80) % 3)
    trainer = nx.PlaygroundTrainer(user, data, learning_rate=0.1)
    before_b = user.b.weight.detach().clone()
    hooks = {n: dict(m._forward_hooks) for n, m in user.named_modules()}
    trainer.step(4)
    trainer.run_epoch()
    assert not user.training and all(not m.training for m in user.modules())
    assert {n: dict(m._forward_hooks) for n, m in user.named_modules()} == hooks
    assert not user.a.weight.requires_grad and torch.equal(user.a.weight, frozen)  # frozen: not trained
    assert not torch.equal(user.b.weight, before_b)
    assert calls["forward"] > 0 and calls["backward"] > 0
    assert trainer.layers == ["act"] and set(trainer.saturation[0]) == {"act"}


def test_trainer_leaves_the_model_as_found_when_training_raises():
    class Fails(UserNet):
        def forward(self, x):
            if self.training:
                raise RuntimeError("boom in train mode")
            return super().forward(x)

    user = Fails()
    dress(user, "b")
    user.eval()
    trainer = nx.PlaygroundTrainer(user, nx.as_toy_dataset(torch.randn(40, 2), torch.arange(40) % 3))
    with untouched(user), pytest.raises(RuntimeError, match="boom"):
        trainer.step()
    assert trainer.steps == 0 and trainer._pos == 0  # the failed minibatch is not counted as seen


# ----------------------------------------------------------------------------------------------- similarity


def test_similarity_over_training_equals_hand_cka():
    net, data, trainer = _trained(hidden=(6, 6), epochs=3)
    assert len(trainer.snapshots) == 4
    sim = trainer.similarity()
    assert sim.shape == (4, 3) and sim.dtype == torch.float64
    torch.testing.assert_close(sim[-1], torch.ones(3, dtype=torch.float64))
    probe = data.x_train[:256]
    latest = layer_activations(net, probe)
    for i, snap in enumerate(trainer.snapshots):
        for j, name in enumerate(["act1", "act2", "out"]):
            assert math.isclose(float(sim[i, j]), ref_cka(snap[name], latest[name]), rel_tol=1e-9)
            # the batched CKA is nbexplain's own linear CKA
            want = float(nx.cka(snap[name].double(), latest[name].double()).value)
            assert math.isclose(float(sim[i, j]), want, rel_tol=1e-9, abs_tol=1e-12)
    ref = nx.layer_similarity(trainer.snapshots, trainer.snapshots[0])
    torch.testing.assert_close(ref[0], torch.ones(3, dtype=torch.float64))
    dead = {"h": torch.ones(10, 3)}
    assert math.isnan(float(nx.layer_similarity([dead, {"h": torch.randn(10, 3)}])[0, 0]))


# ----------------------------------------------------------------------------------------------- bad arguments

_NET = nx.playground_network(hidden=(4,))
_DATA = nx.toy_dataset("moons", 40)
_STATS = nx.layer_statistics(_NET, _DATA.x_train, ["act1"])["act1"]


@pytest.mark.parametrize("call, error, match", [
    (lambda: nx.toy_dataset("moon"), ValueError, "`name` must be one of"),
    (lambda: nx.toy_dataset("moons", 3), ValueError, "`n` must be at least 4"),
    (lambda: nx.toy_dataset("moons", 2.5), TypeError, "`n` must be an integer"),
    (lambda: nx.toy_dataset("moons", noise=-1), ValueError, "`noise` must be a finite number ≥ 0"),
    (lambda: nx.toy_dataset("moons", test_fraction=1.0), ValueError, "`test_fraction` must lie in"),
    (lambda: nx.toy_dataset("moons", test_fraction="a"), TypeError, "`test_fraction` must be a number"),
    (lambda: nx.toy_dataset("xor", classes=3), ValueError, "'spiral' and 'blobs' only"),
    (lambda: nx.toy_dataset("spiral", classes=11), ValueError, "`classes` must lie in 2 … 10"),
    (lambda: nx.toy_dataset("blobs", 10, classes=6), ValueError, "too few"),
    (lambda: nx.toy_dataset("moons", seed=1.5), TypeError, "`seed` must be an integer"),
    (lambda: nx.toy_dataset("moons", 10, test_fraction=0.01), ValueError, "empty train or test split"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 3), torch.zeros(10)), ValueError, "`x` must have 2 columns"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 2), torch.zeros(9)), ValueError, "one label per point"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 2), torch.zeros(10)), ValueError, "single class"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 2), torch.full((10,), 0.5)), TypeError, "non-integer"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 2), -torch.ones(10)), ValueError, "labels 0 … C−1"),
    (lambda: nx.as_toy_dataset(torch.full((10, 2), float("nan")), torch.arange(10) % 2), ValueError, "x"),
    (lambda: nx.as_toy_dataset(torch.randn(10, 2), torch.ones(10, dtype=torch.bool)), TypeError, "y.long()"),
    (lambda: nx.FeatureMap(("x", "z")), ValueError, "`features` must be one of"),
    (lambda: nx.FeatureMap(()), ValueError, "`features` is empty"),
    (lambda: nx.FeatureMap("xy"), TypeError, "`features` must be a sequence"),
    (lambda: nx.FeatureMap(("x", "x")), ValueError, "twice"),
    (lambda: nx.FeatureMap()(torch.zeros(3, 3)), ValueError, r"\(N, 2\)"),
    (lambda: nx.playground_network(hidden=8), TypeError, "`hidden` must be a sequence"),
    (lambda: nx.playground_network(hidden=(0,)), ValueError, "`hidden` must be ≥ 1"),
    (lambda: nx.playground_network(hidden=(65,)), ValueError, "≤ 64"),
    (lambda: nx.playground_network(classes=1), ValueError, "`classes` must be ≥ 2"),
    (lambda: nx.playground_network(activation="swish"), ValueError, "`activation` must be one of"),
    (lambda: nx.playground_network(seed="0"), TypeError, "`seed` must be an integer"),
    (lambda: nx.hidden_layers("net"), TypeError, "model"),
    (lambda: nx.hidden_layers(nn.Sequential(nn.Identity())), ValueError, "neither activation"),
    (lambda: nx.plane_grid((0, 1, 0)), TypeError, "`extent` must be"),
    (lambda: nx.plane_grid((1, 0, 0, 1)), ValueError, "xmin < xmax"),
    (lambda: nx.plane_grid((0, 1, 0, float("inf"))), ValueError, "4 finite numbers"),
    (lambda: nx.plane_grid((0, 1, 0, 1), 1), ValueError, "`resolution` must lie in"),
    (lambda: nx.plane_grid((0, 1, 0, 1), 8.0), TypeError, "`resolution` must be an integer"),
    (lambda: nx.decision_surface(nn.Linear(2, 1), (0, 1, 0, 1)), ValueError, "C ≥ 2"),
    (lambda: nx.decision_surface(nn.Linear(3, 2), (0, 1, 0, 1)), ValueError, "needs a model from 2 inputs"),
    (lambda: nx.neuron_maps(_NET, (0, 1, 0, 1), layers=[]), TypeError, "`layers` must be"),
    (lambda: nx.neuron_maps(_NET, (0, 1, 0, 1), layers=["nope"]), ValueError, "not layers of this network"),
    (lambda: nx.neuron_maps(UserNet(), (0, 1, 0, 1), layers=["nope"]), ValueError, "nope"),
    (lambda: nx.relevance_field(_NET, (0, 1, 0, 1), method="saliency"), ValueError, "`method` must be one of"),
    (lambda: nx.relevance_field(_NET, (0, 1, 0, 1), target=2), ValueError, "`target` must be a class in 0 … 1"),
    (lambda: nx.relevance_field(_NET, (0, 1, 0, 1), target=1.0), TypeError, "`target` must be None"),
    (lambda: nx.relevance_field(_NET, (0, 1, 0, 1), epsilon=0), ValueError, "`epsilon` must be a number > 0"),
    (lambda: nx.projected_surface(_NET, "act1", _STATS, k=0, extent=(0, 1, 0, 1)), ValueError, "`k` must be ≥ 1"),
    (lambda: nx.projected_surface(_NET, "act1", _STATS, k=5, extent=(0, 1, 0, 1)), ValueError, "≤ the layer's width"),
    (lambda: nx.projected_surface(_NET, "act9", _STATS, k=1, extent=(0, 1, 0, 1)), ValueError, "`layer` 'act9'"),
    (lambda: nx.projected_surface(_NET, 1, _STATS, k=1, extent=(0, 1, 0, 1)), TypeError, "`layer` must be"),
    (lambda: nx.projected_surface(_NET, "act1", torch.eye(4), k=1, extent=(0, 1, 0, 1)), TypeError, "`stats`"),
    (lambda: nx.projected_surface(_NET, "fc1", _STATS, k=1, extent=(0, 1, 0, 1), basis="pca"), ValueError,
     "`basis` must be one of"),
    (lambda: nx.projected_surface(_NET, "out", _STATS, k=1, extent=(0, 1, 0, 1)), ValueError, "`stats` describe 4"),
    (lambda: nx.PlaygroundTrainer(_NET, (_DATA.x_train, _DATA.y_train)), TypeError, "`data` must be a ToyDataset"),
    (lambda: nx.PlaygroundTrainer(nx.playground_network(classes=3), _DATA), ValueError, "classes=2"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA, learning_rate=0), ValueError, "`learning_rate` must be"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA, l2=-0.1), ValueError, "`l2` must be"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA, batch_size=0), ValueError, "`batch_size` must be ≥ 1"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA, delta=1.5), ValueError, "`delta` must lie in"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA, seed=None), TypeError, "`seed` must be an integer"),
    (lambda: nx.PlaygroundTrainer(_NET, _DATA).step(0), ValueError, "`batches` must be ≥ 1"),
    (lambda: nx.layer_similarity([]), TypeError, "`snapshots` must be"),
    (lambda: nx.layer_similarity([{"h": torch.ones(3, 2)}], {}), TypeError, "`reference` must be"),
    (lambda: nx.layer_similarity([{"g": torch.ones(3, 2)}], {"h": torch.ones(3, 2)}), ValueError, "lacks layers"),
    (lambda: nx.layer_similarity([{"h": torch.ones(4, 2)}], {"h": torch.ones(3, 2)}), ValueError, "same probe"),
])
def test_bad_arguments(call, error, match):
    with untouched(_NET), pytest.raises(error, match=match):
        call()


def test_frozen_model_cannot_be_trained():
    net = nx.playground_network(hidden=(3,)).requires_grad_(False)
    with untouched(net), pytest.raises(ValueError, match="no parameter that requires grad"):
        nx.PlaygroundTrainer(net, _DATA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu():
    net, data, _ = _trained(("x", "y", "xy"), (6, 6))
    gpu = nx.playground_network(("x", "y", "xy"), (6, 6)).cuda()
    gpu.load_state_dict(net.state_dict())
    for f in (lambda m: nx.decision_surface(m, data.extent, 16),
              lambda m: nx.relevance_field(m, data.extent, 16).relevance,
              lambda m: nx.relevance_field(m, data.extent, 16, method="gradient_x_input").relevance,
              lambda m: nx.neuron_maps(m, data.extent, 16)["act2"]):
        a, b = f(net), f(gpu)
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    stats = nx.layer_statistics(net, data.x_train, ["act1"])["act1"]
    torch.testing.assert_close(nx.projected_surfaces(gpu, "act1", stats, extent=data.extent, resolution=8),
                               nx.projected_surfaces(net, "act1", stats, extent=data.extent, resolution=8),
                               atol=1e-4, rtol=1e-4)
    trainer = nx.PlaygroundTrainer(gpu, data)
    trainer.run_epoch()
    assert next(gpu.parameters()).device.type == "cuda" and len(trainer.saturation) == 1
    trainer.similarity()
