"""The relay: runs a cell on remote kernels and replays what they publish in the notebook.

- ``link.KernelLink``: the one zmq client of a kernel (also used by the recorder and restarts);
- ``loop.run_cell``: the execution loop (one poller over every link of a cell);
- ``liveness.Liveness``: the backend's liveness check, off the loop;
- ``sink.NotebookSink``: the only code that touches ipykernel internals (replay in the notebook).
"""
from __future__ import annotations

from .link import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, KernelLink
from .loop import (CellInterrupted, CellOutcome, FrontendMessage, OutputSink, relay_posted, relay_request,
                   run_cell)
from .sink import NotebookSink, mark_iopub

__all__ = ["HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT", "CellInterrupted", "CellOutcome", "FrontendMessage",
           "KernelLink", "NotebookSink", "OutputSink", "mark_iopub", "relay_posted", "relay_request", "run_cell"]
