"""The playground's core: toy data, playground networks, step-wise training and everything drawn on the plane.

The widget :class:`nbexplain.widgets.Playground` only calls these functions (it holds no algorithm).
"""

from .datasets import DATASETS, ToyDataset, as_toy_dataset, toy_dataset
from .network import ACTIVATIONS, FEATURES, FeatureMap, SelectedOutput, hidden_layers, playground_network
from .plane import decision_surface, neuron_maps, plane_grid
from .projection import projected_surface, projected_surfaces
from .relevance import RELEVANCE_METHODS, RelevanceFieldResult, relevance_field
from .sampler import PlaneSampler
from .similarity import layer_activations, layer_similarity
from .trainer import EpochMetrics, PlaygroundTrainer

__all__ = ["DATASETS", "ToyDataset", "as_toy_dataset", "toy_dataset", "ACTIVATIONS", "FEATURES", "FeatureMap", "SelectedOutput",
           "hidden_layers", "playground_network", "decision_surface", "neuron_maps", "plane_grid",
           "projected_surface", "projected_surfaces", "RELEVANCE_METHODS", "RelevanceFieldResult",
           "relevance_field", "layer_activations", "layer_similarity", "EpochMetrics", "PlaygroundTrainer",
           "PlaneSampler"]
