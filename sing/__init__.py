# SPDX-License-Identifier: GPL-3.0-or-later
"""SING: diffusion-restored DeepJSCC image transmission (arXiv 2503.12484).

The library never imports GNU Radio. Conventions (docs/ALGORITHMS.md §1):
images are float tensors (B, C, H, W) in [0, 1] for DeepJSCC and metrics, [-1, 1] inside diffusion;
channel symbols are complex64 tensors (B, k) with unit average power per image.
"""
__version__ = "0.1.0"
