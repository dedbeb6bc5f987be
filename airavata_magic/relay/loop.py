"""The execution loop: run a cell on kernels and hand what they publish to an ``OutputSink``.

``run_cell`` sends one ``execute_request`` to one or several links and waits on all their sockets
with one ``zmq.Poller`` (no sleeps), handing every iopub message of that request to the sink
until both the ``execute_reply`` and the ``idle`` status have arrived. The same loop carries
frontend messages that other threads posted to a link (a widget's ``comm_msg``), so a link is
only ever used from its owner thread. The backend's liveness check runs off the loop
(``liveness.Liveness``), so a slow check can neither freeze output nor outlast the heartbeat.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import zmq

from ..errors import KernelDied, RequestLost
from .link import HEARTBEAT_TIMEOUT, KernelLink
from .liveness import Liveness

LOST_REQUEST_AFTER = 10.0  # a request unanswered this long after a reconnect was lost in the drop
POLL_MS = 250  # longest wait on the sockets before checking heartbeat, walltime and liveness
INTERRUPT_GRACE = 5.0  # seconds interrupted remote cells get to end before we stop waiting


class OutputSink(Protocol):
    """Where a relayed cell's output goes. ``label`` names the runtime (None for a single one).

    Called from the thread running the cell, in the order the kernel published.
    """

    def stream(self, label: str | None, name: str, text: str) -> None:
        """Text on ``stdout`` or ``stderr`` (``name``)."""

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        """A stream message's content still packed; ``unpack(packed)`` gives ``{name, text}``.
        Lets a sink forward large output without decoding it."""

    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None:
        """``display_data`` or ``update_display_data`` content (data, metadata, transient)."""

    def clear_output(self, label: str | None, wait: bool) -> None:
        """The kernel cleared its output (``wait``: at the next output)."""

    def input(self, label: str | None, prompt: str, password: bool) -> str:
        """The kernel asks for a line of input; return it (``KeyboardInterrupt`` interrupts it)."""

    def comm(self, link: KernelLink, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any]) -> None:
        """A ``comm_open``/``comm_msg``/``comm_close`` from the kernel (widgets), with the message's
        metadata (a widget's ``comm_open`` carries its protocol version there)."""


@dataclass
class CellOutcome:
    """How a cell ended on one kernel."""

    label: str | None
    status: str = "ok"  # ok | error | aborted
    execution_count: int | None = None
    result: dict[str, Any] | None = None  # execute_result content (data, metadata)
    error: dict[str, Any] | None = None  # ename, evalue, traceback
    user_expressions: dict[str, Any] = field(default_factory=dict)


class CellInterrupted(KeyboardInterrupt):
    """The local cell was interrupted while remote cells ran. ``outcomes`` holds how each ended:
    the remote kernel's own KeyboardInterrupt (with its traceback), or, for a cell that did not
    stop in time, an ``aborted`` outcome saying so."""

    def __init__(self, outcomes: list[CellOutcome]) -> None:
        super().__init__("the cell was interrupted")
        self.outcomes = outcomes


@dataclass
class FrontendMessage:
    """A message from the frontend for a kernel (e.g. a widget's new value), posted to the
    link's owner thread; what the kernel publishes in answer goes to ``sink``."""

    msg_type: str
    content: dict[str, Any]
    buffers: list
    sink: OutputSink


class _Execution:
    """The state of one request on one link."""

    def __init__(self, link: KernelLink, sink: OutputSink, msg_id: str, cell: bool = True) -> None:
        self.link, self.sink, self.msg_id = link, sink, msg_id
        self.cell = cell  # an execute_request (else a message without reply, e.g. comm_msg)
        self.outcome = CellOutcome(label=link.label)
        self.replied = not cell
        self.idle = False
        self.started = False  # any iopub message for this request has arrived
        self.reconnected_at: float | None = None

    @property
    def done(self) -> bool:
        return self.replied and self.idle

    def on_iopub(self, msg: dict[str, Any]) -> None:
        self.link.check_kernel_session(msg)
        self.started = True
        t, c = msg["msg_type"], msg["content"]
        label = self.link.label
        if t == "stream":
            # Streams are most of the bytes: hand them on still packed (see NotebookSink).
            if isinstance(c, bytes):
                self.sink.stream_packed(label, c, self.link.session.unpack)
            else:
                self.sink.stream(label, c.get("name", "stdout"), c.get("text", ""))
            return
        if isinstance(c, bytes):
            c = self.link.session.unpack(c)
        if t in ("display_data", "update_display_data"):
            self.sink.display(label, t, c)
        elif t == "execute_result":
            self.outcome.result = c
            self.outcome.execution_count = c.get("execution_count")
        elif t == "error":
            self.outcome.error = c
        elif t == "clear_output":
            self.sink.clear_output(label, bool(c.get("wait")))
        elif t == "status" and c.get("execution_state") == "idle":
            self.idle = True
        elif t in ("comm_open", "comm_msg", "comm_close"):
            self.sink.comm(self.link, t, c, list(msg.get("buffers") or []), msg.get("metadata") or {})
        # execute_input and others are not relayed

    def on_shell(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "execute_reply":
            return
        self.link.check_kernel_session(msg)
        c = msg["content"]
        self.replied = True
        self.outcome.status = c.get("status", "error")
        self.outcome.execution_count = c.get("execution_count", self.outcome.execution_count)
        self.outcome.user_expressions = c.get("user_expressions") or {}
        if self.outcome.status == "error" and self.outcome.error is None:
            self.outcome.error = {k: c.get(k) for k in ("ename", "evalue", "traceback")}

    def on_stdin(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "input_request":
            return
        c = msg["content"]
        try:
            value = self.sink.input(self.link.label, c.get("prompt", ""), bool(c.get("password")))
        except KeyboardInterrupt:
            self.link.send_interrupt_request()
            value = ""
        self.link.session.send(self.link.stdin, "input_reply", {"value": value}, parent=msg)


def run_cell(
    links: list[KernelLink],
    code: str,
    sink: OutputSink,
    *,
    allow_stdin: bool = True,
    silent: bool = False,
    user_expressions: dict[str, str] | None = None,
    interrupt: Callable[[KernelLink], None] | None = None,
    tick: Callable[[], None] | None = None,
    alive: Callable[[KernelLink], bool | None] | None = None,
) -> list[CellOutcome]:
    """Execute ``code`` on every link at once and relay outputs until each has finished.

    Must be called from the links' owner thread. ``interrupt(link)`` is called for each
    unfinished link when the local cell is interrupted; the remote cells then get
    ``INTERRUPT_GRACE`` seconds to end, and ``CellInterrupted`` (a ``KeyboardInterrupt``
    carrying every outcome) is raised. ``tick()`` runs about once a second (walltime warnings).
    ``alive(link)`` may say a kernel is gone sooner than the heartbeat can: it runs in a
    background thread, never blocks the loop, and only its ``False`` counts.
    Raises ``KernelDied`` naming the runtime that vanished.
    """
    content = {
        "code": code,
        "silent": silent,
        "store_history": not silent,
        "user_expressions": user_expressions or {},
        "allow_stdin": allow_stdin,
        "stop_on_error": True,
    }
    for link in links:
        link.check_owner()
        if link.reconnected():
            link.wait_ready(timeout=HEARTBEAT_TIMEOUT * 3)
    runs: list[_Execution] = []
    for link in links:
        runs += _send_posted(link)  # frontend messages that arrived between cells go first
    cells = [_Execution(link, sink, link.send_shell("execute_request", content)) for link in links]
    _drive(runs + cells, interrupt=interrupt, tick=tick, alive=alive)
    return [r.outcome for r in cells]


def relay_request(link: KernelLink, msg_type: str, content: dict[str, Any], buffers: list,
                  sink: OutputSink, timeout: float = 60.0) -> None:
    """Send a shell message that has no reply (e.g. a widget's ``comm_msg``) and relay what the
    kernel publishes for it until it is idle again. Owner thread only."""
    link.check_owner()
    run = _Execution(link, sink, link.send_shell(msg_type, content, buffers), cell=False)
    _drive([run], deadline=time.monotonic() + timeout)


def relay_posted(link: KernelLink, timeout: float = 60.0) -> None:
    """Send what other threads posted to ``link`` and relay the answers (owner thread, between
    cells; during a cell the loop does this itself)."""
    if link.closed:
        return
    link.check_owner()
    runs = _send_posted(link)
    if runs:
        _drive(runs, deadline=time.monotonic() + timeout)


def _send_posted(link: KernelLink) -> list[_Execution]:
    runs = []
    for item in link.take_posted():
        if isinstance(item, FrontendMessage) and not link.closed:
            msg_id = link.send_shell(item.msg_type, item.content, item.buffers)
            runs.append(_Execution(link, item.sink, msg_id, cell=False))
    return runs


def _drive(runs: list[_Execution], *, interrupt: Callable[[KernelLink], None] | None = None,
           tick: Callable[[], None] | None = None, alive: Callable[[KernelLink], bool | None] | None = None,
           deadline: float | None = None) -> None:
    """Wait on every run's sockets at once until each has its reply and its idle status."""
    poller = zmq.Poller()
    links: list[KernelLink] = []
    by_id: dict[str, _Execution] = {r.msg_id: r for r in runs}
    by_socket: dict[Any, tuple[KernelLink, str]] = {}
    start = time.monotonic()
    for run in runs:
        link = run.link
        if link in links:
            continue
        links.append(link)
        for name in ("iopub", "shell", "stdin"):
            sock = getattr(link, name)
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = (link, name)
        hb = link.hb_socket()
        poller.register(hb, zmq.POLLIN)
        by_socket[hb] = (link, "hb")
        poller.register(link.wake_fd, zmq.POLLIN)
        by_socket[link.wake_fd] = (link, "posted")
        link.heartbeat_start(start)
    watch = Liveness(alive) if alive is not None else None
    interrupted_at: float | None = None
    last_tick = start
    for link in links:
        link.driving = True
    try:
        while not all(r.done for r in runs):
            try:
                events = poller.poll(POLL_MS)
                now = time.monotonic()
                for sock, _ in events:
                    link, name = by_socket[sock]
                    if name == "hb":
                        link.heartbeat_received(now)
                    elif name == "posted":
                        for run in _send_posted(link):
                            runs.append(run)
                            by_id[run.msg_id] = run
                    else:
                        msg = link.recv(sock, content=name != "iopub")
                        run = by_id.get(msg["parent_header"].get("msg_id"))
                        if run is not None and run.link is link:
                            getattr(run, f"on_{name}")(msg)
                pending = [r for r in runs if not r.done]
                for link in {r.link for r in pending}:
                    link.heartbeat_tick(now)
                for run in pending:
                    if not run.started:
                        if run.reconnected_at is None and run.link.reconnected():
                            run.reconnected_at = now
                        if run.reconnected_at is not None and now - run.reconnected_at > LOST_REQUEST_AFTER:
                            raise RequestLost(f"the connection to {run.link.label or 'the kernel'} dropped while "
                                              "the cell was being sent and it never started; run the cell again")
                if watch is not None and now - start >= watch.first_after:
                    dead = watch.dead([r.link for r in pending])
                    if dead is not None:
                        raise KernelDied(f"the kernel{dead._of()} has exited", dead.label)
                if tick is not None and now - last_tick >= 1.0:
                    last_tick = now
                    tick()
                if deadline is not None and now > deadline:
                    return
                if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                    raise CellInterrupted(_interrupted_outcomes(runs))
            except CellInterrupted:
                raise
            except KeyboardInterrupt:
                if interrupted_at is not None:  # a second interrupt: stop waiting at once
                    raise CellInterrupted(_interrupted_outcomes(runs)) from None
                interrupted_at = time.monotonic()
                for run in runs:
                    if not run.done and not run.replied:
                        (interrupt or KernelLink.send_interrupt_request)(run.link)
    finally:
        for link in links:
            link.driving = False
        if watch is not None:
            watch.stop()
    if interrupted_at is not None:
        raise CellInterrupted(_interrupted_outcomes(runs))


def _interrupted_outcomes(runs: list[_Execution]) -> list[CellOutcome]:
    """Each cell's outcome after an interrupt; a cell still running says it did not stop."""
    out = []
    for run in runs:
        if not run.cell:
            continue
        o = run.outcome
        if not run.done and o.error is None:
            who = f"runtime {run.link.label!r}" if run.link.label else "the kernel"
            o.status = "aborted"
            o.error = {"ename": "KeyboardInterrupt", "evalue": f"{who} did not stop within {INTERRUPT_GRACE:g} s",
                       "traceback": [f"KeyboardInterrupt: the cell on {who} did not stop within "
                                     f"{INTERRUPT_GRACE:g} s of the interrupt and may still be running "
                                     f"(%interrupt_runtime or %restart_runtime it)"]}
        out.append(o)
    return out
