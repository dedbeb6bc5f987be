"""A kernel restarted in place, through the relay's ``KernelLink`` (the project's one zmq client).

The pod's shell loop (``kernels/pod_kernel.sh``) starts a fresh kernel on the same ports when
the old one shuts down cleanly, so a restart is: ask for a shutdown, then wait until a kernel
with another session id answers (the old one may still answer while it exits).
"""
from __future__ import annotations

import time
from typing import Any

from ...errors import BackendError, KernelDied

#: seconds the old kernel has to acknowledge the shutdown request
SHUTDOWN_REPLY_TIMEOUT = 10.0
#: seconds the new kernel has to answer after the old one acknowledged
COME_BACK_TIMEOUT = 60.0


def restart_kernel(info: dict[str, Any], label: str, *, reply_timeout: float = SHUTDOWN_REPLY_TIMEOUT,
                   timeout: float = COME_BACK_TIMEOUT) -> str:
    """Restart the kernel at ``info`` in place; return the new kernel's session id.

    Raises ``BackendError`` when the kernel does not acknowledge or no new kernel answers in time.
    """
    from ...relay import KernelLink

    link = KernelLink(info, label=label)
    try:
        # First make sure the control channel's path through the port-forward carries messages: a
        # request sent while a fresh forward is still opening its stream can be lost, and a lost
        # shutdown request cannot be told from a kernel that will not answer. kernel_info is
        # harmless to repeat; the shutdown request is sent once.
        deadline = time.monotonic() + reply_timeout
        while True:
            link.session.send(link.control, link.session.msg("kernel_info_request", {}))
            if link.control.poll(1000):
                link.recv(link.control)
                break
            if time.monotonic() >= deadline:
                raise BackendError(f"the kernel of runtime {label!r} did not answer on its control channel")
        # on the control channel, as jupyter_client's restart does; the reply names the old kernel
        link.session.send(link.control, link.session.msg("shutdown_request", {"restart": True}))
        while True:
            if not link.control.poll(int(reply_timeout * 1000)):
                raise BackendError(f"the kernel of runtime {label!r} did not answer the restart request")
            reply = link.recv(link.control)
            if reply["header"]["msg_type"] == "shutdown_reply":
                old = reply["header"]["session"]
                break
    finally:
        link.close()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendError(f"the kernel of runtime {label!r} did not come back within {timeout:.0f} s of the restart")
        # a fresh link each time: the old kernel may answer first, and a link is tied to one kernel
        link = KernelLink(info, label=label)
        try:
            link.wait_ready(timeout=min(5.0, left))
            if link.kernel_session not in (None, old):
                return link.kernel_session
        except KernelDied:
            pass  # the old kernel is gone and the new one not up yet
        finally:
            link.close()
        time.sleep(0.1)
