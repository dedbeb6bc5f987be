"""Runs an IPython kernel on a remote node for airavata-magic, and restarts it on request.

Started by the Slurm job script or over SSH (``python remote_launcher.py RUNDIR [--ip auto]
[--walltime MIN] [--detach]``) with the profile's ``python``. Standard library only, Python 3.6+, because
it runs with whatever interpreter the cluster has.

Files in RUNDIR (0700), the protocol with the client:
- ``kernel.json``: the connection file (0600). We write a seed with a key from ``secrets`` and
  port 0; ipykernel binds random ports on ``ip`` and rewrites the file with them. The client treats
  a file with port 0 (or unreadable) as "not ready".
- ``restart``: flag file; the current kernel is stopped and a fresh one started (same allocation).
- ``stop``: flag file; the kernel is stopped and this launcher exits 0.
- ``launcher.pid``, ``exit`` (the final exit code), and events on stderr (the job log).
"""
import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

POLL_S = 0.1


def log(msg):
    sys.stderr.write("[airavata-magic %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def choose_ip(requested):
    """The address the kernel binds: never 0.0.0.0.

    ``auto``: loopback when the client reaches this node through SSH to this same host (the job
    runs where it was submitted, or no scheduler); otherwise the interface this node uses to reach
    the submit (login) host, i.e. the cluster network, which the client reaches through the login node.
    """
    if requested != "auto":
        return requested
    submit = os.environ.get("SLURM_SUBMIT_HOST", "")
    here = socket.gethostname().split(".")[0]
    if not submit or submit.split(".")[0] == here:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((submit, 9))  # no packet is sent: this only asks the routing table
        ip = s.getsockname()[0]
    if ip.startswith("127.") or ip == "0.0.0.0":  # a guard: an unroutable answer falls back to loopback
        return "127.0.0.1"
    return ip


def write_seed(path, ip):
    """The connection file ipykernel completes: key from `secrets`, ports 0, mode 0600 from birth."""
    info = {
        "ip": ip, "transport": "tcp", "signature_scheme": "hmac-sha256",
        "key": secrets.token_hex(32), "kernel_name": "python3",
        "shell_port": 0, "iopub_port": 0, "stdin_port": 0, "control_port": 0, "hb_port": 0,
    }
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.rename(tmp, path)


def stop_kernel(proc, grace=5.0):
    if proc.poll() is not None:
        return
    proc.terminate()
    deadline = time.time() + grace
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def take_flag(path):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir")
    ap.add_argument("--ip", default="auto")
    ap.add_argument("--walltime", type=float, default=0.0, help="minutes; 0 = none (Slurm enforces its own)")
    ap.add_argument("--detach", action="store_true", help="new session: survive the SSH channel that started us")
    args = ap.parse_args()
    if args.detach:
        try:
            os.setsid()
        except OSError:
            pass  # already a session leader
    deadline = time.time() + args.walltime * 60 if args.walltime else 0.0
    os.umask(0o077)
    rundir = os.path.abspath(args.rundir)
    os.chmod(rundir, 0o700)
    conn = os.path.join(rundir, "kernel.json")
    with open(os.path.join(rundir, "launcher.pid"), "w") as f:
        f.write(str(os.getpid()))
    ip = choose_ip(args.ip)
    state = {"proc": None}

    def on_term(signum, frame):
        if state["proc"] is not None:
            stop_kernel(state["proc"], grace=2.0)
        finish(128 + signum, "stopped by signal %d" % signum)

    def finish(code, why):
        log("launcher exits %d: %s" % (code, why))
        for p in (conn,):
            if os.path.exists(p):
                os.unlink(p)
        with open(os.path.join(rundir, "exit"), "w") as f:
            f.write("%d %s\n" % (code, why))
        sys.exit(code)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    generation = 0
    while True:
        generation += 1
        if os.path.exists(conn):
            os.unlink(conn)
        write_seed(conn, ip)
        # The kernel runs in the user's home, like a login shell would.
        # parent_handle: the kernel exits if this launcher dies (and skips its terminal banner).
        proc = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", conn,
                                 "--IPKernelApp.parent_handle=%d" % os.getpid()],
                                cwd=os.path.expanduser("~"), stdin=subprocess.DEVNULL)
        state["proc"] = proc
        log("kernel %d started (pid %d, binding %s)" % (generation, proc.pid, ip))
        while True:
            rc = proc.poll()
            if take_flag(os.path.join(rundir, "stop")):
                stop_kernel(proc)
                finish(0, "stopped on request")
            if take_flag(os.path.join(rundir, "restart")):
                stop_kernel(proc)
                log("kernel %d stopped for a restart" % generation)
                break
            if deadline and time.time() >= deadline:
                stop_kernel(proc)
                finish(124, "walltime reached")
            if rc is not None:
                if rc == 0:
                    finish(0, "kernel %d exited" % generation)
                finish(rc if rc > 0 else 128 - rc, "kernel %d exited with code %d" % (generation, rc))
            time.sleep(POLL_S)


if __name__ == "__main__":
    main()
