"""Helpers for the slurm area's tests: start a runtime through a backend, talk to its kernel.

No mocks: these drive the real backend against the real test bed and a real kernel, with
jupyter_client as the client (the way the manager's KernelLink will).
"""
from __future__ import annotations

import queue
import subprocess
import time
from dataclasses import dataclass, field

from jupyter_client import BlockingKernelClient

from airavata_magic.backends.base import Backend
from airavata_magic.manager import apply_observation, apply_submission
from airavata_magic.runtime import Observation, Runtime, RuntimeSpec, RuntimeState


@dataclass
class Started:
    backend: Backend
    runtime: Runtime
    info: dict | None = None
    client: BlockingKernelClient | None = None
    observations: list[Observation] = field(default_factory=list)


def request(backend: Backend, name: str, **spec) -> Started:
    rt = Runtime(name=name, resource=backend.resource.name, kind=backend.kind, spec=RuntimeSpec(**spec))
    apply_submission(rt, backend.request(rt))  # what the manager does with a submission
    return Started(backend, rt)


def observe(s: Started) -> Observation:
    obs = s.backend.observe([s.runtime])[s.runtime.name]
    apply_observation(s.runtime, obs)  # what the manager does with an observation
    s.observations.append(obs)
    return obs


def wait_state(s: Started, states: set[RuntimeState], timeout: float) -> Observation:
    deadline = time.monotonic() + timeout
    while True:
        obs = observe(s)
        if obs.state in states:
            return obs
        if time.monotonic() > deadline:
            raise AssertionError(f"{s.runtime.name}: still {obs.state} ({obs.reason}) after {timeout} s; log:\n{obs.log_tail}")
        time.sleep(0.2)


def connect(s: Started, timeout: float = 60) -> BlockingKernelClient:
    """Wait until the kernel answers kernel_info through the backend's forwards."""
    deadline = time.monotonic() + timeout
    while True:
        obs = observe(s)
        assert not obs.state.terminal, f"{s.runtime.name} ended: {obs.state} {obs.reason}\n{obs.log_tail}"
        if obs.state in (RuntimeState.STARTING, RuntimeState.READY):
            info = s.backend.connection(s.runtime)
            if info is not None:
                break
        assert time.monotonic() < deadline, f"{s.runtime.name}: no connection after {timeout} s: {obs}"
        time.sleep(0.1)
    s.info = info
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    kc.wait_for_ready(timeout=max(5.0, deadline - time.monotonic()))
    s.runtime.state = RuntimeState.READY
    if s.client is not None:
        s.client.stop_channels()
    s.client = kc
    return kc


def execute(kc: BlockingKernelClient, code: str, timeout: float = 30) -> tuple[str, str, dict]:
    """Run code; (stdout, status, reply content). Waits for the reply and the cell's idle status."""
    msg_id = kc.execute(code)
    out, idle, reply = [], False, None
    deadline = time.monotonic() + timeout
    while not (idle and reply is not None):
        assert time.monotonic() < deadline, f"cell did not finish in {timeout} s; so far {''.join(out)!r}"
        try:
            m = kc.get_iopub_msg(timeout=0.1)
            if m["parent_header"].get("msg_id") == msg_id:
                if m["msg_type"] == "stream":
                    out.append(m["content"]["text"])
                elif m["msg_type"] == "error":
                    out.append(f"{m['content']['ename']}: {m['content']['evalue']}")
                elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
        except queue.Empty:
            pass
        if reply is None:
            try:
                r = kc.get_shell_msg(timeout=0)
                if r["parent_header"].get("msg_id") == msg_id:
                    reply = r["content"]
            except queue.Empty:
                pass
    return "".join(out), reply["status"], reply


def stop_quietly(s: Started) -> None:
    if s.client is not None:
        s.client.stop_channels()
        s.client = None
    try:
        s.backend.stop(s.runtime)
    except Exception:  # noqa: BLE001 - cleanup of a test: the runtime may be long gone
        pass


#: Slurm states after which a job never changes again (COMPLETING is not one: it ends soon after)
SLURM_TERMINAL = {"CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                  "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}


def squeue_state(job_id: str) -> str:
    """The job's Slurm state now ('' once Slurm has forgotten it)."""
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-j", job_id, "-o", "%T"],
                         capture_output=True, text=True).stdout.strip()
    return out.split()[0].rstrip("+") if out else ""


def wait_job_ended(job_id: str, timeout: float = 30) -> str:
    """Wait (with a deadline) until the job is in a terminal state, and return it ('' when
    Slurm no longer lists it). On a loaded machine a cancelled job shows COMPLETING first."""
    deadline = time.monotonic() + timeout
    while True:
        state = squeue_state(job_id)
        if state in SLURM_TERMINAL or not state:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm job {job_id} still {state} after {timeout} s")
        time.sleep(0.2)
