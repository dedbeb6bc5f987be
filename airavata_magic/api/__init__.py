"""The Python API of airavata-magic, for scripts: ``import airavata_magic as am``.

```python
import airavata_magic as am

am.session.start("run1")                     # optional: record every call below
rt = am.request_runtime("demo", resource="local", cpus=2)
rt.wait(timeout=120)
rt.run("import os; print(os.getpid())")      # output streams here; errors raise am.RemoteError
print(am.runtimes())                         # a DataFrame
am.session.stop()
am.session.export("run1", "run1.ipynb")      # papermill run1.ipynb out.ipynb re-runs the calls
```

These are the functions the magics and the command line call (one ``RuntimeManager`` per
process, ``airavata_magic.get_manager()``). Errors are ``airavata_magic.errors.AiravataError``
subclasses whose message is one line saying what is wrong and how to fix it.
"""
from __future__ import annotations

from ..errors import AiravataError, RuntimeFailed, RuntimeUnavailable
from . import session
from .runtimes import RemoteError, RemoteValue, Runtime, authenticate, get_runtime, request_runtime, runtimes

__all__ = ["authenticate", "request_runtime", "get_runtime", "runtimes", "Runtime", "RemoteError", "RemoteValue",
           "session", "AiravataError", "RuntimeFailed", "RuntimeUnavailable"]
