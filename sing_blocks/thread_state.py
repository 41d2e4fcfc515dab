# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep a Python block thread's interpreter state between GNU Radio's calls into Python.

GNU Radio runs each block in its own C++ thread and enters Python for every work() call and every
message through pybind11's gil_scoped_acquire. A thread that holds no Python thread state gets a
new one for each such call and loses it afterwards: PyThreadState_New, and on Python 3.11 a fresh
16 KiB frame stack (mmap, first-touch page faults, munmap), then PyThreadState_Clear/Delete. For a
block that takes one message per image that is the largest cost per message: 3000 PDUs posted to a
Python block cost 28 ms of CPU to deliver, 4 ms with the state kept (measured on the project's
2-core VM, where a page fault costs several µs).

`ThreadStateHold.hold()`, called in the block's thread (GNU Radio calls start(), work(), the message
handlers and stop() of a block in that block's thread), takes one more reference on the current
thread state with PyGILState_Ensure, so pybind11's release after each call no longer deletes it;
`release()` in stop() gives it back (the state is then freed as before). Nothing else changes:
the GIL is still taken and dropped around every call.
"""
from __future__ import annotations

import ctypes
import threading

try:
    _ensure = ctypes.pythonapi.PyGILState_Ensure
    _ensure.restype = ctypes.c_int
    _ensure.argtypes = []
    _release = ctypes.pythonapi.PyGILState_Release
    _release.restype = None
    _release.argtypes = [ctypes.c_int]
except (AttributeError, OSError):       # an interpreter without the C API: nothing to keep
    _ensure = _release = None


class ThreadStateHold:
    """One extra reference on the Python thread state of each thread that calls `hold()`."""

    def __init__(self):
        self._held: dict[int, int] = {}

    def hold(self) -> None:
        """Keep the calling thread's state (idempotent per thread). Call with the GIL held, from the
        thread whose state is to be kept."""
        t = threading.get_ident()
        if _ensure is not None and t not in self._held:
            self._held[t] = _ensure()

    def release(self) -> None:
        """Give back what `hold()` took in the calling thread (no-op if nothing was held there)."""
        st = self._held.pop(threading.get_ident(), None)
        if st is not None:
            _release(st)
