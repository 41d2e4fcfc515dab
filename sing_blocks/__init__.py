"""SING blocks for GNU Radio (installed as ``gnuradio.sing``).

Thin blocks that move PDUs and metadata and call the ``sing`` library (pip-installed):
``jscc_image_source``, ``pdu_channel``, ``sing_receiver`` and the Qt ``image_display``.
The OFDM over-the-air blocks live in ``ofdm_*`` modules of this package.
"""
import logging as _logging

from .jscc_image_source import jscc_image_source
from .pdu_channel import pdu_channel
from .sing_receiver import sing_receiver

try:                                   # needs PyQt5 (a GUI host); headless hosts work without it
    from .image_display import image_display
except ImportError as _e:              # pragma: no cover
    _logging.getLogger(__name__).info("gnuradio.sing: image_display unavailable (%s)", _e)

try:                                   # over-the-air PHY (ofdm_*.py), written separately
    from .ofdm import *                # noqa: F401,F403
except ImportError as _e:
    _logging.getLogger(__name__).info("gnuradio.sing: OFDM blocks unavailable (%s)", _e)
