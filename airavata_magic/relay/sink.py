"""The notebook side of the relay: the only code that touches ipykernel internals.

``NotebookSink`` replays relayed output in the notebook kernel it runs in, as if produced there:
streams re-signed with this kernel's key and parent, rich output through IPython's display
machinery, widget comms republished with their metadata, and a comm proxy per remote widget so
the frontend's messages reach the remote kernel, through the thread that owns its link.
"""
from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Any, Callable

import zmq

from ..errors import KernelDied
from .link import KernelLink
from .loop import FrontendMessage, relay_posted


def notebook_kernel() -> Any:
    """The ipykernel running this notebook, if any (None in a terminal IPython or a plain process)."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
    except ImportError:
        return None
    if kernel is None or not all(hasattr(kernel, a) for a in ("session", "iopub_socket", "get_parent")):
        return None
    return kernel


def mark_iopub(token: str) -> bool:
    """Publish a marker on this kernel's own iopub, behind everything it published so far.

    stdout and stderr are flushed first, then an ``iopub_welcome`` for ``token`` goes out through
    the same queue as all other output: a subscriber that receives it has received everything
    before it. Frontends ignore it (no parent; the kernel sends the same message to every new
    subscriber). Returns False when not running in ipykernel."""
    k = notebook_kernel()
    if k is None:
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    k.session.send(k.iopub_socket, "iopub_welcome", {"subscription": token}, parent={}, ident=token.encode())
    return True


class _CommProxy:
    """Stands in the notebook kernel's comm manager for a comm that lives on a remote kernel:
    messages the frontend sends to it (e.g. a widget's new value) are forwarded to that kernel.

    ipykernel may call it from another thread (a subshell) while the owner thread runs a cell on
    the same link: the message is posted to the link, and its owner sends it, during a cell from
    its poll loop, between cells from its event loop."""

    def __init__(self, comm_id: str, target_name: str, link: KernelLink, sink: "NotebookSink") -> None:
        self.comm_id, self.target_name, self.link, self.sink = comm_id, target_name, link, sink

    def handle_msg(self, msg: dict[str, Any]) -> None:
        self._forward("comm_msg", msg)

    def handle_close(self, msg: dict[str, Any]) -> None:
        self._forward("comm_close", msg)

    def _forward(self, msg_type: str, msg: dict[str, Any]) -> None:
        link = self.link
        if link.closed:
            return
        link.post(FrontendMessage(msg_type, msg["content"], list(msg.get("buffers") or []), self.sink))
        if link.owned_here() and not link.driving:
            _relay_posted(link)
        elif not link.owned_here() and self.sink.loop is not None:
            self.sink.loop.call_soon_threadsafe(_relay_posted, link)
        # else: the owner's poll loop is running and has been woken by post()


def _relay_posted(link: KernelLink) -> None:
    if link.driving:
        return  # a cell is running on the link: its loop sends what was posted
    try:
        relay_posted(link)
    except (KernelDied, zmq.ZMQError):
        pass  # the runtime went away; the next cell on it says so


class NotebookSink:
    """Replays relayed output in the notebook kernel it runs in, as if produced locally.

    With ``labelled`` (several runtimes at once), stream lines are prefixed ``[label] `` and each
    rich output is preceded by its label. Create it in the thread that runs the cell.
    """

    def __init__(self, labelled: bool = False) -> None:
        self.labelled = labelled
        self._line_start: dict[tuple[str | None, str], bool] = {}
        self._kernel = notebook_kernel()
        try:
            #: the event loop of the thread running cells: frontend messages for a link that
            #: arrive between cells on another thread are relayed from it
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        """Forward a remote stream message's packed content as this kernel's own stream output.

        Jupyter's Session accepts already-packed content for relays; it is re-signed with this
        kernel's key and parent. Local stdout/stderr are flushed first so order is kept.
        """
        if self.labelled or self._kernel is None:
            c = unpack(packed)
            self.stream(label, c.get("name", "stdout"), c.get("text", ""))
            return
        sys.stdout.flush()
        sys.stderr.flush()
        k = self._kernel
        k.session.send(k.iopub_socket, "stream", content=packed, parent=k.get_parent("shell"), ident=b"stream")

    def stream(self, label: str | None, name: str, text: str) -> None:
        """Write decoded stream text to this kernel's stdout/stderr (prefixed when labelled)."""
        out = sys.stderr if name == "stderr" else sys.stdout
        if self.labelled and label is not None:
            text = self._prefix(label, name, text)
        out.write(text)

    def _prefix(self, label: str, name: str, text: str) -> str:
        key = (label, name)
        at_start = self._line_start.get(key, True)
        prefix = f"[{label}] "
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            if (i > 0 or at_start) and (line or i < len(lines) - 1):
                line = prefix + line
            out.append(line)
        self._line_start[key] = text.endswith("\n")
        return "\n".join(out)

    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None:
        """Publish a remote display (or display update) as this kernel's own, display id kept.
        In a plain process (no IPython shell: a script calling the API) a display's text is
        printed and updates are dropped: IPython's display machinery would make a shell."""
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import publish_display_data

        if not InteractiveShell.initialized():
            text = (content.get("data") or {}).get("text/plain")
            if msg_type == "display_data" and text:
                print(text, flush=True)
            return

        if self.labelled and label is not None and msg_type == "display_data":
            sys.stdout.write(f"[{label}] output:\n")
            sys.stdout.flush()
        publish_display_data(
            content.get("data", {}),
            content.get("metadata") or {},
            transient=content.get("transient") or {},
            update=msg_type == "update_display_data",
        )

    def clear_output(self, label: str | None, wait: bool) -> None:
        """Clear this cell's output, as the remote kernel did."""
        from IPython.display import clear_output

        clear_output(wait=wait)

    def comm(self, link: KernelLink, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any] | None = None) -> None:
        """Widgets: republish the remote kernel's comm messages to the frontend, metadata included
        (JupyterLab checks a widget's protocol version there), and register a proxy so the
        frontend's replies reach the remote comm. Needs an ipykernel notebook."""
        k = self._kernel
        manager = getattr(k, "comm_manager", None)
        if k is None or manager is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        k.session.send(k.iopub_socket, msg_type, content=content, parent=k.get_parent("shell"),
                       metadata=metadata or {}, buffers=[bytes(b) for b in buffers] or None,
                       ident=msg_type.encode())
        comm_id = content.get("comm_id")
        if msg_type == "comm_open" and comm_id:
            manager.register_comm(_CommProxy(comm_id, content.get("target_name", ""), link, self))
        elif msg_type == "comm_close" and comm_id:
            manager.comms.pop(comm_id, None)

    def input(self, label: str | None, prompt: str, password: bool) -> str:
        """Ask the notebook's user (a password is remembered as a secret, never recorded)."""
        if self.labelled and label is not None:
            prompt = f"[{label}] {prompt}"
        sys.stdout.flush()
        if password:
            from .. import known_secrets

            value = getpass.getpass(prompt)
            known_secrets.remember(value)
            return value
        return input(prompt)
