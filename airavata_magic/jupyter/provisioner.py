"""``RuntimeProvisioner``: a jupyter_client kernel provisioner that starts kernels on runtimes.

Selected by a kernelspec's ``metadata.kernel_provisioner`` (``airavata-magic kernelspec install
--runtime PRESET`` writes one). Each kernel start requests a fresh runtime from the preset through
``RuntimeManager`` (the same backends as the magics), waits until its kernel answers, and hands
jupyter_client the connection info. Tunnels and forwards (Slurm, ssh) live in the backend held by
this provisioner, i.e. in the process that runs the KernelManager, for as long as the kernel does.
Shutting the kernel down stops the runtime (scancel, pod deleted, local process ended).

A restart stops the runtime and starts a fresh one from the preset, so the kernel's ports change,
as with any remote provisioner: jupyter_server sees ``ports_changed`` and reconnects the browser;
a plain jupyter_client user makes a new client (``km.client()``) after ``restart_kernel``.
Interrupts are ``interrupt_request`` messages (the kernelspec sets ``interrupt_mode: message``).
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import threading
import time
import uuid
import weakref
from typing import Any

from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Float, Unicode

from ..errors import AiravataError

POLL_EVERY = 2.0  # seconds between scheduler queries when the backend has no cheap liveness check

# Provisioners with a runtime not yet stopped: stopped at interpreter exit, so that an interrupted
# papermill or nbclient does not leave a queued or running job behind (SIGKILL aside).
_LIVE: "weakref.WeakSet[RuntimeProvisioner]" = weakref.WeakSet()
_STOP_LOCK = threading.Lock()


@atexit.register
def _stop_live_runtimes() -> None:
    for prov in list(_LIVE):
        if prov._cancel is not None:
            prov._cancel.set()
        prov._stop_runtime()


class RuntimeProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Start each kernel on a fresh runtime from a preset of the user's profile."""

    runtime = Unicode(help="the runtime preset (from the profile's runtimes:) to start kernels on").tag(config=True)
    profile = Unicode(None, allow_none=True, help="the profile file; default: the usual search").tag(config=True)
    wait_timeout = Float(900.0, help="seconds to wait for the runtime's kernel to answer").tag(config=True)

    _manager: Any = None
    _name: str | None = None
    _exit: int | None = None
    _checked_at: float = 0.0
    _stopped: bool = False
    _cancel: threading.Event | None = None  # set when launch_kernel is interrupted

    # -- helpers ---------------------------------------------------------------------------------
    def _mgr(self):
        if self._manager is None:
            from ..manager import RuntimeManager

            log = logging.getLogger("airavata_magic.provisioner")
            self._manager = RuntimeManager(warn=lambda text: log.warning(text))
        return self._manager

    def _record(self):
        return self._mgr().get(self._name)

    def _start_runtime(self) -> dict[str, Any]:
        """Blocking: request a runtime like the preset, wait for it, return its connection info."""
        from ..profile import load_profile

        prof = load_profile(self.profile)
        preset = prof.presets.get(self.runtime)
        if preset is None:
            raise AiravataError(f"kernelspec names preset {self.runtime!r}, which {prof.path or 'the profile'} "
                                f"does not define (presets: {', '.join(sorted(prof.presets)) or 'none'})")
        # A fresh runtime per kernel, named after the preset, with exactly the preset's settings.
        name = f"{self.runtime[:40]}-{(self.kernel_id or uuid.uuid4().hex)[:8]}"
        mgr = self._mgr()
        mgr.request(name, file=self.profile, preset=self.runtime)
        self._name, self._exit, self._stopped = name, None, False
        _LIVE.add(self)

        def cancelled(_rt: Any, _elapsed: float, _log_tail: str = "") -> None:
            if self._cancel is not None and self._cancel.is_set():
                raise AiravataError(f"start of runtime {name!r} cancelled")

        try:
            rt = mgr.wait(name, timeout=self.wait_timeout, on_update=cancelled)
            # The KernelManager connects by itself; the manager's own link is not needed.
            mgr.release_link(name)
            info = mgr.backend_for(rt).connection(rt)
            if info is None:
                raise AiravataError(f"runtime {name!r} is ready but reports no connection info")
        except BaseException:
            self._stop_runtime()
            raise
        info = dict(info)
        if isinstance(info.get("key"), str):
            info["key"] = info["key"].encode()
        self.log.info("kernel %s runs on runtime %s (%s, job %s)", self.kernel_id, name, rt.resource, rt.job_id)
        return info

    def _stop_runtime(self) -> None:
        with _STOP_LOCK:
            if self._name is None or self._stopped:
                return
            self._stopped = True
        _LIVE.discard(self)
        try:
            self._mgr().stop(self._name)
        except AiravataError as e:
            self.log.warning("stopping runtime %s: %s", self._name, e)
        self._exit = 0 if self._exit is None else self._exit

    def _poll_blocking(self) -> int | None:
        if self._name is None or self._exit is not None:
            return self._exit
        try:
            rt = self._record()
            alive = self._mgr().backend_for(rt).kernel_alive(rt)
            if alive is None and time.monotonic() - self._checked_at >= POLL_EVERY:
                self._checked_at = time.monotonic()
                rt = self._mgr().refresh([rt])[0]
                alive = not rt.state.terminal
            elif alive is None:
                alive = not rt.state.terminal
        except AiravataError:
            alive = False
        if not alive:
            self._exit = 1
        return self._exit

    # -- KernelProvisionerBase -------------------------------------------------------------------
    @property
    def has_process(self) -> bool:
        return self._name is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        km = self.parent
        # argv from the kernelspec is never run; jupyter_client still expects a command.
        kwargs["cmd"] = km.format_kernel_cmd(extra_arguments=kwargs.pop("extra_arguments", [])) if km else []
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        if not self.runtime:
            raise AiravataError("the kernelspec's provisioner config has no runtime preset; "
                                "reinstall it with airavata-magic kernelspec install --runtime PRESET")
        # A daemon thread, not asyncio.to_thread: an interrupted papermill must be able to exit
        # (the executor's threads are joined at exit) and stop the queued runtime on its way out.
        self._cancel = threading.Event()
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def settle(fn: Any, value: Any) -> None:
            if not done.done():
                fn(value)

        def work() -> None:
            try:
                info = self._start_runtime()
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                loop.call_soon_threadsafe(settle, done.set_exception, e)
            else:
                loop.call_soon_threadsafe(settle, done.set_result, info)

        threading.Thread(target=work, name="airavata-provisioner-start", daemon=True).start()
        try:
            self.connection_info = await done
        except BaseException:
            self._cancel.set()
            raise
        return self.connection_info

    async def poll(self) -> int | None:
        return await asyncio.to_thread(self._poll_blocking)

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.2)
        return self._exit

    async def send_signal(self, signum: int) -> None:
        if signum == 0:
            return
        if signum == signal.SIGINT and self._name is not None:
            # interrupt_mode is "message", so jupyter_client normally sends interrupt_request itself.
            return
        await self.terminate()

    async def kill(self, restart: bool = False) -> None:
        await asyncio.to_thread(self._stop_runtime)

    async def terminate(self, restart: bool = False) -> None:
        await asyncio.to_thread(self._stop_runtime)

    async def cleanup(self, restart: bool = False) -> None:
        # The kernel is gone or going: release its runtime too (a Slurm job would outlive it).
        if self._name is not None:
            await asyncio.to_thread(self._stop_runtime)
        if not restart and self._manager is not None:
            self._manager.close()
            self._manager = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, self.wait_timeout)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(runtime_preset=self.runtime, runtime_name=self._name, profile=self.profile)
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.runtime = provisioner_info.get("runtime_preset", self.runtime)
        self.profile = provisioner_info.get("profile", self.profile)
        self._name = provisioner_info.get("runtime_name")
