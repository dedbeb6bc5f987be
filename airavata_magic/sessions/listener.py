"""The session recorder's listener: this kernel's own iopub, read like a second frontend."""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from ..errors import AiravataError
from ..relay import KernelLink


class IOPubListener(threading.Thread):
    """An iopub-only ``KernelLink`` to this kernel, handing each message to ``on_message``.

    The link is created and used in this thread only."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None], on_error: Callable[[str], None]) -> None:
        super().__init__(name="airavata-session-iopub", daemon=True)
        self.on_message = on_message
        self.on_error = on_error
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: str | None = None
        #: a private iopub topic: subscribing to it makes the kernel send *us* an iopub_welcome
        #: (XPUB passes only the first subscription to a topic on), which proves we receive
        self.topic = f"airavata-journal-{uuid.uuid4().hex}"

    def start_and_wait(self, timeout: float = 10.0) -> None:
        """Start and return once the kernel has confirmed the subscription (``iopub_welcome``)."""
        self.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AiravataError("the session recorder could not subscribe to this kernel's output "
                                f"({self._error or 'no iopub_welcome within %g s' % timeout})")
        if self._error:
            raise AiravataError(f"the session recorder cannot read this kernel's output: {self._error}")

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2)

    def run(self) -> None:
        try:
            from ipykernel.connect import get_connection_info

            info = get_connection_info(unpack=True)
        except Exception as e:  # noqa: BLE001 - not running inside ipykernel
            self._error = f"not a Jupyter kernel ({type(e).__name__}: {e})"
            self._ready.set()
            return
        link = KernelLink(info, label="notebook", channels=("iopub",))
        try:
            link.subscribe(self.topic)
            sock = link.iopub
            while not self._stopping.is_set():
                if not sock.poll(100):
                    continue
                while sock.poll(0):
                    try:
                        msg = link.recv(sock)
                    except ValueError:  # a malformed or foreign message
                        continue
                    if msg["msg_type"] == "iopub_welcome" and msg["content"].get("subscription") == self.topic:
                        self._ready.set()
                        continue
                    try:
                        self.on_message(msg)
                    except Exception as e:  # noqa: BLE001 - reported to the notebook by post_run_cell
                        self.on_error(f"{type(e).__name__}: {e}")
        finally:
            link.close()
