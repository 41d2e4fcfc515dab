# SPDX-License-Identifier: GPL-3.0-or-later
"""OFDM physical layer for analog JSCC symbols. Pure numpy: never imports GNU Radio.

Frame (all at one sample rate, FFT N = 64, CP 16, 802.11a subcarrier plan: 48 data, 4 pilots at
±7, ±21, DC and 11 guard bins null):

    [STF 16×16 samples][LTF: CP 32 + 2×64][header: n_h OFDM symbols][payload: ceil(k/48) symbols]

- ``params``: the subcarrier plan, preamble and pilot sequences, the payload interleaver.
- ``header``: the digital header (k, seq, image id / its CRC32, model-id CRC32, shape, CRC32) with a
  first-order Reed-Muller (biorthogonal [32, 6, 16]) code, soft ML decoding.
- ``sync``: DC removal, Schmidl-Cox detection and CFO modulo 1/16, the integer-CFO search over
  the LTF correlation, fine CFO.
- ``chanest``: LS channel estimate from the LTF, refined with the CRC-checked header symbols,
  smoothed in a delay basis (interfered bins left out of the fit).
- ``cpe``: pilot tracking over long frames: timing drift (clock offset) and common phase.
- ``snr``: noise per subcarrier from the training symbols and the post-equalisation SNR of the
  payload; ``tones``: cancelling a CW on the subcarriers it hits.
- ``tx``: frame builder (batched). ``rx``: streaming receiver, vectorised over all candidates and
  frames in each pushed chunk.
"""
from .params import OfdmParams
from .header import HeaderFields
from .tx import build_frame
from .rx import OfdmReceiver, RxFrame

__all__ = ["OfdmParams", "HeaderFields", "build_frame", "OfdmReceiver", "RxFrame"]
