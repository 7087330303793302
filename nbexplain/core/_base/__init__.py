"""Shared machinery: validation, model hygiene, model inputs and outputs, layers and layouts, capture, running moments, dense linear algebra."""
