"""Activation maximization: objectives, optimisation, top-activating examples, image parameterisations and robustness transforms."""
