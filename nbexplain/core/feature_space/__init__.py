"""Feature-space saturation: tracking covariance over training, δ eigen-projection, probes."""
