"""Bulk bytes over SSH with asyncssh (through the sshfs filesystem's connection and event loop).

Measured on loopback (bench/bench_copy.py, TESTBED.md): asyncssh with the server's largest read
size and many requests in flight is within a few percent of OpenSSH ``scp``; paramiko's SFTP
reads in fixed 32 KiB requests and reaches about 0.6x. So bulk bytes go through asyncssh here,
while short control commands (sha256sum, cp, mv) use the resource's pooled paramiko connection.

Downloads keep many SFTP reads in flight and write the blocks *in order*: the temporary file
always holds a clean prefix, which is what a resumed copy checks and continues from. Uploads read
the local file in a thread and keep several large writes in flight.
"""
from __future__ import annotations

import asyncio
import os
import shlex
from collections import deque
from typing import Any, BinaryIO, Callable

CHUNK = 16 * 1024 * 1024  # one read/write call; asyncssh splits it into parallel SFTP requests


def run(fs: Any, coro_fn: Callable[..., Any], *args: Any) -> Any:
    """Run a coroutine on the sshfs filesystem's own event loop thread, from sync code.

    Ctrl-C here cancels the transfer there (fsspec's own ``sync`` would leave it running). A
    dropped connection or an SFTP error becomes one ``TransportError`` line; the next use of the
    location connects afresh (``sshlogin.ssh_filesystem`` drops dead connections)."""
    import concurrent.futures

    import asyncssh

    from ..errors import TransportError

    fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), fs.loop)
    try:
        while True:
            try:
                return fut.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                continue
    except asyncssh.SFTPNoSuchFile as e:
        raise FileNotFoundError(str(e.reason)) from None
    except asyncssh.SFTPPermissionDenied as e:
        raise PermissionError(str(e.reason)) from None
    except (asyncssh.Error, ConnectionError, EOFError, BrokenPipeError) as e:
        what = getattr(e, "reason", "") or str(e) or type(e).__name__
        raise TransportError(f"transfer over SSH interrupted ({what}); run the copy again to resume") from None
    except BaseException:
        fut.cancel()  # KeyboardInterrupt: stop the transfer, close its SFTP file, then go on
        try:
            fut.result(timeout=10)
        except BaseException:  # noqa: BLE001 - cancelled, or failed while stopping
            pass
        raise


IN_FLIGHT = 3  # chunks requested at once: the SFTP pipeline never drains between chunks


async def _download(fs: Any, rpath: str, out: BinaryIO, offset: int, size: int, cb: Callable[[int], None]) -> None:
    async with fs._pool.get() as sftp:
        async with sftp.open(rpath, "rb", block_size=-1) as f:
            # asyncssh keeps up to 128 requests of the server's largest read size in flight and
            # hands blocks back as they come; they are written here strictly in order, so the
            # local temporary file always holds a clean prefix for a later resume.
            early: dict[int, bytes] = {}
            nxt = offset
            async for off, data in await f.read_parallel(size - offset, offset):
                early[off] = data
                while nxt in early:
                    block = early.pop(nxt)
                    out.write(block)
                    nxt += len(block)
                    cb(len(block))
            if nxt != size:
                raise OSError(f"{rpath} is shorter than {size} bytes (changed during the copy?)")


def download(fs: Any, rpath: str, out: BinaryIO, offset: int, size: int, cb: Callable[[int], None]) -> None:
    """Append bytes ``offset..size`` of remote ``rpath`` to ``out`` (positioned at ``offset``)."""
    run(fs, _download, fs, rpath, out, offset, size, cb)


async def _upload(fs: Any, src: BinaryIO, rpath: str, offset: int, size: int, cb: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    async with fs._pool.get() as sftp:
        mode = "r+b" if offset else "wb"
        async with sftp.open(rpath, mode, block_size=-1) as f:
            if not offset:
                await f.chmod(0o600)  # private while partial; the final mode is set before the rename
            pending: deque[asyncio.Future] = deque()
            pos = offset
            try:
                while pos < size:
                    data = await loop.run_in_executor(None, src.read, min(CHUNK, size - pos))
                    if not data:
                        raise OSError(f"the local file ended at {pos} bytes, expected {size} (changed during the copy?)")
                    pending.append(asyncio.ensure_future(f.write(data, pos)))
                    pos += len(data)
                    while len(pending) >= IN_FLIGHT:
                        cb(await pending.popleft())
                while pending:
                    cb(await pending.popleft())
            finally:
                for fut in pending:
                    fut.cancel()


def upload(fs: Any, src: BinaryIO, rpath: str, offset: int, size: int, cb: Callable[[int], None]) -> None:
    """Write bytes ``offset..size`` of ``src`` (positioned at ``offset``) into remote ``rpath``.

    Chunks are written in parallel: after a crash the remote temporary file may have a gap, which
    the resume's prefix check then finds (and the copy starts over) rather than trusting it."""
    run(fs, _upload, fs, src, rpath, offset, size, cb)


async def _rename(fs: Any, src: str, dst: str, mode: int | None) -> None:
    async with fs._pool.get() as sftp:
        if mode is not None:
            await sftp.chmod(src, mode)
        await sftp.posix_rename(src, dst)  # atomic replace (OpenSSH extension)


def rename(fs: Any, src: str, dst: str, mode: int | None = None) -> None:
    """Atomically move a finished remote temp file over its destination."""
    run(fs, _rename, fs, src, dst, mode)


async def _stream_out(fs: Any, command: str, sink: Callable[[bytes], None]) -> tuple[int, str]:
    async with fs._client_lock:  # sshfs keeps channels for commands apart from its SFTP pool
        proc = await fs.client.create_process(command, encoding=None)
        proc.stdin.write_eof()
        async def drain_err() -> bytes:
            return await proc.stderr.read()
        err_task = asyncio.ensure_future(drain_err())
        while True:
            chunk = await proc.stdout.read(1 << 20)
            if not chunk:
                break
            await asyncio.get_running_loop().run_in_executor(None, sink, chunk)
        await proc.wait_closed()
        err = await err_task
        return proc.exit_status or 0, err.decode(errors="replace")


def stream_out(fs: Any, argv: list[str], sink: Callable[[bytes], None], cwd: str | None = None) -> tuple[int, str]:
    """Run a remote command and hand its stdout to ``sink`` chunk by chunk -> (rc, stderr)."""
    cmd = " ".join(shlex.quote(a) for a in argv)
    if cwd:
        cmd = f"cd -- {shlex.quote(cwd)} && {cmd}"
    return run(fs, _stream_out, fs, cmd, sink)


async def _stream_in(fs: Any, command: str, source: Callable[[], bytes]) -> tuple[int, str]:
    async with fs._client_lock:
        proc = await fs.client.create_process(command, encoding=None)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)

        async def produce() -> None:  # reading the source overlaps sending what was read
            while True:
                chunk = await loop.run_in_executor(None, source)
                await chunks.put(chunk)
                if not chunk:
                    return

        producer = asyncio.ensure_future(produce())
        try:
            while chunk := await chunks.get():
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            await producer
        finally:
            producer.cancel()
        proc.stdin.write_eof()
        out = await proc.stdout.read()
        err = await proc.stderr.read()
        await proc.wait_closed()
        return proc.exit_status or 0, (err or out).decode(errors="replace")


def stream_in(fs: Any, command: str, source: Callable[[], bytes]) -> tuple[int, str]:
    """Run a remote shell command (already quoted) feeding it ``source()`` chunks until b''."""
    return run(fs, _stream_in, fs, command, source)


def local_size(path: str) -> int:
    return os.stat(path).st_size
