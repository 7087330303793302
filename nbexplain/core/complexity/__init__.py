"""Feature-component complexity (Ren et al. 2021): decomposition, disentangler nets, Shapley values."""
