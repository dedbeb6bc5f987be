"""The data magics in a real notebook kernel with a real local runtime: variables both ways
(DataFrame, NumPy), progress shown in one display, shell-style quoting, one-line errors."""
from __future__ import annotations

import pytest


@pytest.fixture
def nb(notebook, tmp_path):
    notebook.ok("%request_runtime loc --resource local")
    notebook.ok("%wait_for_runtime loc --timeout 60")
    return notebook


def usage_error(cell) -> str:
    assert cell.status == "error" or "UsageError" in cell.stderr, cell.text
    lines = [ln for ln in cell.text.splitlines() if ln.strip()]
    assert len(lines) == 1, cell.text  # one line, no traceback
    return lines[0]


def test_push_and_pull_dataframe_and_arrays(nb):
    nb.ok("import numpy as np, pandas as pd\n"
          "df = pd.DataFrame({'a': np.arange(100_000), 'b': np.random.rand(100_000)})\n"
          "arr = np.random.rand(1000, 100)")
    out = nb.ok("%push_vars loc df arr").stdout
    assert "pushed arr, df to 'loc'" in out
    nb.ok("%%run_on loc\ndf['c'] = df.a * 2\nsummary = float(arr.sum())\nimport os; pid = os.getpid()")
    nb.ok("%pull_vars loc df summary pid --as df2,s,rpid")
    check = nb.ok("import os\nprint(df2.c.equals(df.a * 2), abs(s - arr.sum()) < 1e-6, rpid != os.getpid(),"
                  " len(df2) == len(df), df2.b.equals(df.b))")
    assert check.stdout == "True True True True True\n"


def test_variable_errors_are_one_line(nb):
    assert "name 'nope' is not defined in this notebook" in usage_error(nb.run("%push_vars loc nope"))
    assert "name 'ghost' is not defined on this runtime" in usage_error(nb.run("%pull_vars loc ghost"))
    nb.ok("f = lambda: 1\nbig = bytes(5000)")
    assert "'f' cannot be pickled" in usage_error(nb.run("%push_vars loc f"))
    assert "over the limit of 1024 bytes" in usage_error(nb.run("%push_vars loc big --limit 1K"))
    assert "'local' is this notebook's own kernel" in usage_error(nb.run("%pull_vars local x"))
    assert "--as needs 2 Python name(s)" in usage_error(nb.run("%pull_vars loc a b --as c"))


def test_storage_copy_and_dataset_magics(nb, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.bin").write_bytes(b"z" * (3 << 20))
    nb.ok(f"%storage register --name lab --location {tmp_path / 'lab'}")
    (tmp_path / "lab").mkdir()
    table = nb.ok("%storage list")
    (res,) = table.of_type("execute_result")
    assert "lab" in res["data"]["text/plain"] and "text/html" in res["data"]
    cell = nb.ok(f"%copy_data local:{tmp_path / 'src'} lab:copy --recursive --verify")
    displays = cell.of_type("display_data")
    assert len(displays) == 1 and displays[0]["transient"]["display_id"]  # one display, updated in place
    assert all(u["transient"] == displays[0]["transient"] for u in cell.of_type("update_display_data"))
    assert "sha256 verified" in cell.stdout
    assert (tmp_path / "lab" / "copy" / "data.bin").stat().st_size == 3 << 20
    nb.ok('%dataset register --name ds --location lab:copy --after-download "echo a; echo b > b.txt" '
          "--description 'two words'")
    shown = nb.ok("%dataset show ds").of_type("execute_result")[0]["data"]["text/plain"]
    assert "'after_download': 'echo a; echo b > b.txt'" in shown and "'description': 'two words'" in shown
    out = nb.ok("%dataset load ds --runtime loc --as dpath").stdout
    assert "variable dpath" in out
    assert nb.ok("%%run_on loc\nimport os\nprint(open(os.path.join(dpath, 'b.txt')).read(), end='')").stdout == "b\n"
    assert "choose --public or --private" in usage_error(nb.run("%dataset register --name x --location lab:a "
                                                                "--public --private"))
    assert "public datasets need a shared registry" in usage_error(
        nb.run("%dataset register --name x --location lab:copy --public"))
    assert "cannot parse the arguments" in usage_error(nb.run('%copy_data "unbalanced x'))
    assert "add --recursive" in usage_error(nb.run(f"%copy_data local:{tmp_path / 'src'} lab:again"))


def test_mount_links_local_storage_into_the_kernels_directory(nb, tmp_path):
    (tmp_path / "shelf").mkdir()
    (tmp_path / "shelf" / "book.txt").write_text("words")
    nb.ok(f"%storage register --name shelf --location {tmp_path / 'shelf'}")
    assert "is visible on 'loc'" in nb.ok("%storage mount shelf --runtime loc --as mounted/shelf").stdout
    assert nb.ok("%%run_on loc\nprint(open('mounted/shelf/book.txt').read())").stdout == "words\n"


def test_loading_the_extension_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys\nfrom IPython.testing.globalipapp import start_ipython\nip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'airavata_magic')\n"
            "assert 'copy_data' in ip.magics_manager.magics['line']\n"
            "print(sorted(m for m in ('fsspec', 'sshfs', 'asyncssh', 'paramiko', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slurm
def test_data_magics_on_a_slurm_runtime(slurm_testbed, notebook_factory, tmp_path):
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(slurm_testbed.profile)})
    nb.ok("%request_runtime sl --resource hpc --cpus 1 --memory 256M --walltime 10")
    nb.ok("%wait_for_runtime sl --timeout 180")
    nb.ok("%storage register --name slh --location hpc:~/am-magic")
    nb.ok("values = {'a': [1, 2, 3], 'b': 'text'}\nblob = bytes(range(256)) * 1000")
    assert "pushed blob, values to 'sl'" in nb.ok("%push_vars sl values blob").stdout
    nb.ok("%%run_on sl\nimport os\nvalues['n'] = len(blob)\nopen('am-magic-in.txt', 'w').write('from slurm')")
    nb.ok("%pull_vars sl values --as got")
    assert nb.ok("print(got)").stdout == "{'a': [1, 2, 3], 'b': 'text', 'n': 256000}\n"
    cell = nb.ok("%copy_data sl:am-magic-in.txt slh:in.txt --verify")
    assert "sha256 verified" in cell.stdout and "remote-cp" in cell.stdout  # one host: cp there
    nb.ok(f"%copy_data slh:in.txt local:{tmp_path / 'back.txt'}")
    assert (tmp_path / "back.txt").read_text() == "from slurm"
    nb.ok("%dataset register --name slds --location slh:in.txt")
    assert "(variable slds)" in nb.ok("%dataset load slds --runtime sl").stdout
    assert nb.ok("%%run_on sl\nprint(open(slds + '/in.txt').read())").stdout == "from slurm\n"


def test_the_python_api_takes_runtime_handles(home):
    import numpy as np

    import airavata_magic as am

    rt = am.request_runtime("apivars", resource="local")
    try:
        rt.wait(60)
        arr = np.arange(10.0)
        assert am.storage.push_vars(rt, arr=arr, label="x") == ["arr", "label"]
        rt.run("arr = arr * 2")
        got = am.storage.pull_vars(rt, ["arr", "label"])
        assert np.array_equal(got["arr"], arr * 2) and got["label"] == "x"
    finally:
        rt.stop()
