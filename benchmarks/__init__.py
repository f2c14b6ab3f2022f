"""Benchmarks of EfficientSAM3-Edge: ``python -m benchmarks.run [--quick] [--preset edge|tiny]``.

Nothing imports this package; it only reads the public APIs of efficient_sam3, export, runtime and
training, and reports numbers (it never asserts a time).
"""
