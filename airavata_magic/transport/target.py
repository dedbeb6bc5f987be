"""Where to log in over SSH, as plain data: importing this module imports no SSH library.

Backends build an ``SshTarget`` from a profile and check ``proxy_jump`` values at profile
validation time; ``transport.ssh`` (paramiko) is imported only when a connection is made.
"""
from __future__ import annotations

import dataclasses
import getpass
import re
import shlex
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. Hashable: it is the key of the shared connection pool."""

    host: str
    port: int = 22
    user: str = dataclasses.field(default_factory=getpass.getuser)
    identity_file: str | None = None  # else the SSH agent
    known_hosts: str = "~/.ssh/known_hosts"
    proxy_jump: str | None = None  # [user@]host[:port], same key and known_hosts

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def jump_target(self) -> "SshTarget | None":
        """The bastion as its own target, or None."""
        if not self.proxy_jump:
            return None
        user, host, port = parse_jump(self.proxy_jump, self.user)
        return dataclasses.replace(self, host=host, port=port, user=user, proxy_jump=None)


_JUMP_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?$")


def parse_jump(value: str, default_user: str) -> tuple[str, str, int]:
    """``[user@]host[:port]`` -> (user, host, port). Raises ValueError with the expected form."""
    m = _JUMP_RE.match(value.strip())
    if not m or not 1 <= int(m.group("port") or 22) <= 65535:
        raise ValueError(f"expected [user@]host[:port], got {value!r}")
    return m.group("user") or default_user, m.group("host").strip("[]"), int(m.group("port") or 22)


def quote_argv(argv: Sequence[str]) -> str:
    """A remote shell command line from an argv: every element ``shlex.quote``d."""
    return " ".join(shlex.quote(str(a)) for a in argv)
