# SPDX-License-Identifier: GPL-3.0-or-later
"""Baselines that SING is compared against (docs/ALGORITHMS.md §6), one algorithm per file:

- `dps.dps_restore`: DPS through the known DeepJSCC encoder (DiffCom-style, arXiv 2209.14687 Alg. 1,
  arXiv 2406.07390): a receiver that knows the JSCC and conditions a diffusion prior on the received
  symbols y.
- `sdedit.sdedit_restore`: SDEdit (arXiv 2108.01073): the prior alone from the decoder's output x̂
  noised to start·T, no data term; SING-Zero's chain without its range-null-space correction.
- `digital.digital_separation`: separate source/channel coding with an ideal capacity-achieving
  channel code, R = k·log2(1 + SNR) bits per image, JPEG or WebP through Pillow. A bound, not a
  receiver: it needs the original image.
"""
from .digital import CODECS, digital_separation, rate_bits
from .dps import dps_restore, dps_residual
from .sdedit import sdedit_restore

__all__ = ["CODECS", "digital_separation", "dps_residual", "dps_restore", "rate_bits", "sdedit_restore"]
