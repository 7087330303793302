"""Representation similarity: CCA, SVCCA, PWCCA, CKA, streaming statistics and similarity grids."""
