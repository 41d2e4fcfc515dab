# SPDX-License-Identifier: GPL-3.0-or-later
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


def _import_ofdm() -> None:
    """Over-the-air PHY blocks (``ofdm_*.py``, written separately): each module ``ofdm_x`` that
    defines a block class ``ofdm_x`` is exported as ``gnuradio.sing.ofdm_x``; a module that fails
    to import costs one log line, never the rest of the package."""
    import importlib
    import pkgutil
    for _m in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ofdm")):
        try:
            mod = importlib.import_module(f".{_m}", __name__)
        except ImportError as e:
            _logging.getLogger(__name__).warning("gnuradio.sing: %s unavailable (%s)", _m, e)
            continue
        for name in getattr(mod, "__all__", [_m]):
            if hasattr(mod, name):
                globals()[name] = getattr(mod, name)


_import_ofdm()
