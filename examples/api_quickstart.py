"""The Python API in a plain script: request a local runtime, run code there, record the calls as
a session and export it as a notebook that papermill re-runs.

    python examples/api_quickstart.py [OUT.ipynb]
    papermill OUT.ipynb replayed.ipynb

Only `import airavata_magic as am` is used. The runtime is stopped when the script ends.
"""
import sys

import airavata_magic as am

out = sys.argv[1] if len(sys.argv) > 1 else "api_quickstart_session.ipynb"

print(am.session.start("api-quickstart"))
rt = am.request_runtime("api-demo", resource="local", memory="1G", walltime=30)
print(rt.message)
rt.wait(timeout=120)

rt.run("import os, platform\nprint('hello from pid', os.getpid(), 'on', platform.node())")
answer = rt.run("sum(range(10))")
print("the runtime says:", answer)

lines: list[str] = []
rt.run("for i in range(3): print('line', i)", on_output=lambda name, text: lines.append(text))
print("collected through a callback:", "".join(lines).split("\n")[:3])

try:
    rt.run("1 / 0")
except am.RemoteError as e:
    print("the remote error came back:", e)

print(am.runtimes()[["name", "resource", "state"]].to_string(index=False))
rt.stop()
print(am.session.stop())
print("exported to", am.session.export("api-quickstart", out))
