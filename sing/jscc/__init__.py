# SPDX-License-Identifier: GPL-3.0-or-later
"""DeepJSCC (docs/ALGORITHMS.md §2): SNR-adaptive encoder/decoder, any BCR, trained per BCR."""
from .model import DeepJSCC, JSCCConfig, build_jscc, load_jscc

__all__ = ["DeepJSCC", "JSCCConfig", "build_jscc", "load_jscc"]
