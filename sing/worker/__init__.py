# SPDX-License-Identifier: GPL-3.0-or-later
"""The GPU worker over ZeroMQ (wire format in docs/PROTOCOL.md).

protocol (wire format, limits, error codes) · client (WorkerClient, used by the GNU Radio blocks;
numpy + pyzmq only) · server (`sing worker`) · batching · engine (models via sing.methods) ·
broker (`sing broker`) · keys (`sing keys`, CURVE) · bench (`sing bench worker`).
Nothing here is imported eagerly: the radio host imports only protocol/client/keys (no torch).
"""
