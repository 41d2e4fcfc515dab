# SPDX-License-Identifier: GPL-3.0-or-later
"""PDU helpers shared by the SING blocks (CONVENTIONS.md, "GNU Radio").

One image = one PDU = ``pmt.cons(meta_dict, c32vector)``. Metadata keys: ``image_id`` (str),
``k`` (int), ``bcr`` (str), ``model_id`` (str), ``height``, ``width``, ``channels`` (int),
``snr_db`` (float, when known), ``snr_source`` ("true" | "estimated").

Image PDUs (what the source sends to a display, what the receiver emits) carry a u8vector of
``height*width*channels`` bytes in HWC order with the same metadata keys.
"""
from __future__ import annotations

import numpy as np
import pmt

from sing.rx_sink import BadImage, check_symbols

from .ofdm_pmt import c32_pmt, dict_pmt

BadPDU = BadImage          # a PDU that cannot be used (reason, message, image_id): that image only


def message_ports(block, ins: dict | None = None, outs=()) -> None:
    """Register a block's message ports: `ins` {port: handler} and the output ports named in `outs`.
    Each handler must be a method of the block: GNU Radio's Python gateway calls it by its __name__
    (a lambda or functools.partial fails at run time). "system" is GNU Radio's own port: only its handler
    is set."""
    for name, handler in (ins or {}).items():
        if name != "system":
            block.message_port_register_in(pmt.intern(name))
        block.set_msg_handler(pmt.intern(name), handler)
    for name in outs:
        block.message_port_register_out(pmt.intern(name))


def meta_from_pmt(m: pmt.pmt_t) -> dict:
    if pmt.is_null(m):
        return {}
    if not pmt.is_dict(m):
        raise BadPDU("bad_pdu", "PDU metadata is not a dictionary")
    out = pmt.to_python(m)
    return {str(k): v for k, v in out.items()} if isinstance(out, dict) else {}


def symbols_pdu(meta: dict, symbols: np.ndarray) -> pmt.pmt_t:
    return pmt.cons(dict_pmt(meta), c32_pmt(np.asarray(symbols, np.complex64)))


def image_pdu(meta: dict, image_hwc: np.ndarray) -> pmt.pmt_t:
    a = np.ascontiguousarray(image_hwc, dtype=np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    m = dict(meta, height=int(a.shape[0]), width=int(a.shape[1]), channels=int(a.shape[2]))
    return pmt.cons(dict_pmt(m), pmt.init_u8vector(a.size, a.reshape(-1)))


def parse_image_pdu(msg: pmt.pmt_t) -> tuple[dict, np.ndarray]:
    if not pmt.is_pair(msg):
        raise BadPDU("bad_pdu", "message is not a PDU (pmt.cons(meta, u8vector))")
    meta = meta_from_pmt(pmt.car(msg))
    v = pmt.cdr(msg)
    if not pmt.is_u8vector(v):
        raise BadPDU("bad_type", "image PDU payload must be a u8vector (HWC bytes)",
                     meta.get("image_id"))
    a = np.asarray(pmt.u8vector_elements(v), dtype=np.uint8)
    try:
        h, w, c = int(meta["height"]), int(meta["width"]), int(meta.get("channels", 3))
        a = a.reshape(h, w, c)
    except (KeyError, ValueError, TypeError) as e:
        raise BadPDU("bad_length", f"image PDU of {a.size} bytes does not match its "
                     f"height/width/channels metadata ({e})", meta.get("image_id")) from None
    return meta, a


def parse_symbols_pdu(msg: pmt.pmt_t, expect_k: int | None = None) -> tuple[dict, np.ndarray]:
    """Validate a symbols PDU; returns (meta, complex64 (k,)). Raises BadPDU with a clear reason."""
    if not pmt.is_pair(msg):
        raise BadPDU("bad_pdu", "message is not a PDU: expected pmt.cons(meta_dict, c32vector)")
    meta = meta_from_pmt(pmt.car(msg))
    iid = meta.get("image_id")
    v = pmt.cdr(msg)
    if not pmt.is_c32vector(v):
        kind = next((t for t in ("f32vector", "u8vector", "s32vector", "c64vector", "f64vector")
                     if getattr(pmt, f"is_{t}")(v)), "non-vector")
        raise BadPDU("bad_type", f"payload is a {kind}; a SING PDU carries a c32vector of complex "
                     f"symbols", iid)
    y = np.asarray(pmt.c32vector_elements(v), dtype=np.complex64)
    check_symbols(meta, y, expect_k)
    return meta, y
