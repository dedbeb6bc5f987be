"""A real JupyterLab server on loopback and the page helpers that drive it in Chromium.

``LabServer`` starts ``jupyter lab`` from this venv with a token, a port of its own, and every
Jupyter and airavata-magic path in a temporary folder (nothing of the user's is read or written).
``Lab`` wraps one Playwright page: open a notebook, run cells the way a person does (menu, toolbar,
Shift+Enter), and read what the page shows. Every wait has a deadline.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "browser"

# Debian's Chromium as root in a closed network: without the background-networking flags it keeps
# trying to reach Google's hosts at start and is refused, many connections at a time.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# JupyterLab user settings: no news or update checks (no network here, no toast over the page),
# and every cell kept in the DOM (no windowing), so a cell's outputs can be read wherever it is.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
        {"windowingMode": "none", "autoStartDefaultKernel": True},
}


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerExited(AssertionError):
    """jupyter lab ended before it answered."""


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token, serving ``root``, all state under ``base``."""

    def __init__(self, base: Path, notebooks: list[Path], profile_text: str) -> None:
        self.base = base
        self.root = base / "root"
        self.root.mkdir(parents=True)
        for nb in notebooks:
            shutil.copy(nb, self.root / nb.name)
        self.profile = base / "cybershuttle.yml"
        self.profile.write_text(profile_text)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = self._env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "lab.log"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "AIRAVATA_MAGIC"))}
        dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
                "JUPYTERLAB_SETTINGS_DIR": "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
                "IPYTHONDIR": "ipython", "AIRAVATA_MAGIC_HOME": "airavata-home"}
        for var, name in dirs.items():
            path = self.base / name
            path.mkdir(mode=0o700, exist_ok=True)
            env[var] = str(path)
        env["AIRAVATA_MAGIC_PROFILE"] = str(self.profile)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for rel, value in LAB_SETTINGS.items():
            path = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        return env

    def start(self, timeout: float = 90, tries: int = 3) -> None:
        """Start the server; a port taken between our pick and its bind is tried again elsewhere."""
        for attempt in range(tries):
            try:
                self._start_once(timeout)
                return
            except ServerExited:
                if attempt == tries - 1:
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"

    def _start_once(self, timeout: float) -> None:
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly"]
        if os.geteuid() == 0:  # CI runs as root
            cmd.append("--allow-root")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self._answers, timeout, f"JupyterLab to answer on {self.url} (log: {self.log})", every=0.25)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerExited(f"jupyter lab exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``airavata-magic ARGS`` with the server's environment (same home, profile, Jupyter paths)."""
        return subprocess.run([sys.executable, "-m", "airavata_magic.cli", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.cli("stop", "--all", timeout=60)  # runtimes of the notebooks' kernels, not left behind
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # jupyter lab shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


class Lab:
    """One Chromium page on the Lab server: what a person clicks, and what the page shows."""

    def __init__(self, page: Any, server: LabServer) -> None:
        self.page = page
        self.server = server

    # -- navigation ------------------------------------------------------------------------------
    def open(self, path: str = "", reset: bool = False) -> None:
        """Load Lab (optionally on ``path``); ``reset`` starts from an empty workspace."""
        query = f"?token={self.server.token}" + ("&reset" if reset else "")
        self.page.goto(f"{self.server.url}/lab/tree/{path}{query}" if path else f"{self.server.url}/lab{query}")
        self.page.locator("#jp-main-dock-panel").wait_for(timeout=60_000)

    def open_notebook(self, name: str) -> None:
        """Open ``name`` from the file browser (as a person does) and wait for its kernel."""
        count = len(json.loads((self.server.root / name).read_text())["cells"])
        self.page.locator(".jp-DirListing-item", has_text=name).first.dblclick()
        wait_until(lambda: self.notebook.locator(".jp-Cell").count() == count, 30, f"{name}'s {count} cells")
        self.wait_kernel_idle()

    @property
    def notebook(self) -> Any:
        """The notebook panel in front."""
        return self.page.locator(".jp-NotebookPanel:visible").first

    def kernel_status(self) -> str:
        """The kernel's status as the toolbar's kernel name and the status bar show it."""
        bar = self.page.locator(".jp-StatusBar-TextItem", has_text="|")
        return bar.first.inner_text().rsplit("|", 1)[-1].strip().lower() if bar.count() else ""

    def wait_kernel_idle(self, timeout: float = 60) -> None:
        """Wait for the kernel; if Lab asks which kernel to start (the settings say to start the
        notebook's own, but a person would answer), take the preselected one."""
        def idle() -> bool:
            dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
            if dialog.count():
                dialog.locator("button", has_text="Select").click()
            return self.kernel_status() == "idle"
        wait_until(idle, timeout, "the notebook's kernel to be idle")

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
        self.page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).first.click()

    def shot(self, name: str, target: Any = None) -> Path:
        """A screenshot kept in out/browser/ (the cell scrolled into view first when given)."""
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.png"
        if target is not None:
            target.scroll_into_view_if_needed()
        self.page.screenshot(path=str(path))
        return path

    # -- cells -----------------------------------------------------------------------------------
    def cells(self) -> Any:
        return self.notebook.locator(".jp-Cell.jp-CodeCell")

    def cell(self, source_start: str) -> Any:
        """The code cell whose source starts with ``source_start`` (text as the editor shows it)."""
        handle = self.notebook.locator(".jp-Cell.jp-CodeCell").filter(
            has=self.page.locator(".jp-InputArea-editor", has_text=source_start))
        return handle.first

    def prompt(self, cell: Any) -> str:
        return cell.locator(".jp-InputArea-prompt").inner_text().strip()

    def run(self, cell: Any) -> None:
        """Select the cell by its prompt and press Shift+Enter."""
        cell.locator(".jp-InputArea-prompt").click()
        self.page.keyboard.press("Shift+Enter")

    def wait_done(self, cell: Any, timeout: float = 60) -> str:
        """Wait until the cell has run (a number in its prompt, not ``*``); return the prompt."""
        def done() -> str | None:
            p = self.prompt(cell)
            return p if p.startswith("[") and p[1:-2].isdigit() else None
        return wait_until(done, timeout, f"cell {cell.locator('.jp-InputArea-editor').inner_text()[:60]!r} to finish")

    def run_and_wait(self, cell: Any, timeout: float = 60) -> str:
        before = self.prompt(cell)
        self.run(cell)
        wait_until(lambda: self.prompt(cell) != before or "*" in self.prompt(cell), 10, "the cell to start")
        self.wait_done(cell, timeout)
        return self.output_text(cell)

    def outputs(self, cell: Any) -> Any:
        return cell.locator(".jp-OutputArea-child")

    def output_text(self, cell: Any) -> str:
        """What the cell's outputs show (without the ``[n]:`` prompts of results)."""
        return "\n".join(cell.locator(".jp-OutputArea-output").all_inner_texts())

    def errors(self, cell: Any) -> Any:
        return cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')

    # -- watching an output while it changes -----------------------------------------------------
    def watch_outputs(self, source_start: str) -> None:
        """Record every state (count of output areas, text) of one cell's outputs, in the page."""
        self.page.evaluate(
            """(marker) => {
              window.__snaps = [];
              const find = () => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')]
                .find(c => (c.querySelector('.jp-InputArea-editor')?.textContent || '').startsWith(marker));
              const record = () => {
                const cell = find(); if (!cell) return;
                const outs = cell.querySelectorAll('.jp-OutputArea-child');
                const text = [...outs].map(o => o.textContent).join('\\u241e');
                const last = window.__snaps[window.__snaps.length - 1];
                if (!last || last.text !== text || last.n !== outs.length) window.__snaps.push({n: outs.length, text});
              };
              new MutationObserver(record).observe(document.body,
                {subtree: true, childList: true, characterData: true, attributes: false});
            }""", source_start)

    def watched(self) -> list[dict[str, Any]]:
        return self.page.evaluate("window.__snaps || []")
