"""Property tests: any planted secret is redacted; any cell round-trips through the journal."""
from __future__ import annotations

import json
import string

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airavata_magic.sessions import journal
from airavata_magic.sessions.redact import Redactor

secret_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.+/=!@#$%^&*", min_size=6, max_size=40)
names = st.sampled_from(["password", "db_password", "API_KEY", "githubToken", "client_secret", "token"])


@settings(max_examples=150, deadline=None)
@given(secret=secret_text, name=names, quote=st.sampled_from(["'", '"']))
def test_a_planted_secret_never_survives(secret, name, quote):
    r = Redactor()
    code = f"{name} = {quote}{secret}{quote}\nprint({name})\n"
    red_code = r.code(code)  # the recorder redacts a cell's code before its outputs
    out = r.output({"output_type": "stream", "name": "stdout", "text": f"{secret}\n"})
    assert secret not in red_code
    assert secret not in out["text"]
    # and in free text of a later output, in a key=value pair or alone
    assert secret not in r.text(f"connecting with {name}={secret} ... {secret}")


cell_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.tuples(cell_text, cell_text), min_size=1, max_size=8))
def test_any_cells_round_trip_through_the_journal(tmp_path, cells):
    path = tmp_path / "p.ipynb"
    j = journal.JournalFile(path, journal.new_metadata("p"))
    for i, (src, text) in enumerate(cells):
        j.append(journal.new_code_cell(src, [{"output_type": "stream", "name": "stdout", "text": text}], i,
                                       {"runtimes": ["local"], "status": "ok"}))
    j.close()
    raw = path.read_text(encoding="ascii")  # escaped: byte offsets stay character offsets
    nb = json.loads(raw)
    nbformat.validate(nbformat.from_dict(nb))
    assert [(c["source"], c["outputs"][0]["text"]) for c in nb["cells"]] == cells
