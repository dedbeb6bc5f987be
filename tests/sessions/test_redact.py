"""Redaction of secrets in code and outputs (unit level; the recorder tests cover the kernel path)."""
from __future__ import annotations

import pytest

from airavata_magic import known_secrets
from airavata_magic.sessions.redact import MARK, Redactor, is_secret_name

KEY_BLOCK = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz\n"
             "c2gtZWQyNTUxOQAAACDzZz1fakefakefake\n-----END OPENSSH PRIVATE KEY-----")


@pytest.mark.parametrize("name", ["password", "DB_PASSWORD", "github_token", "apiKey", "API_KEY", "api-key",
                                  "client_secret", "secret", "AWS_SECRET_ACCESS_KEY", "passwd", "token"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["tokenizer", "max_tokens", "keyboard", "passenger", "monkey", "x", "keys"])
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_code_literals_become_named_markers_and_values_are_learned():
    r = Redactor()
    code = ('password = "hunter2-planted"\nconfig = {"api_key": \'k-123456\'}\nconnect(token="tok-999999")\n'
            'tokenizer = "bert-base"\nx: str = "plain"\ntoken: str = "annotated-secret"\n')
    out = r.code(code)
    assert "hunter2-planted" not in out and "k-123456" not in out and "tok-999999" not in out
    assert "annotated-secret" not in out
    assert "password = '<redacted:password>'" in out
    assert "connect(token='<redacted:token>')" in out
    assert 'tokenizer = "bert-base"' in out and 'x: str = "plain"' in out
    # learned: the same values are redacted wherever they appear later
    assert r.text("login with hunter2-planted now") == f"login with {MARK} now"


def test_code_that_is_not_python_is_redacted_as_text():
    r = Redactor()
    out = r.code("%%bash\nexport TOKEN=abc123def\ncurl -H 'password: s3cr3t-value' x\n")
    assert "abc123def" not in out and "s3cr3t-value" not in out


def test_calls_and_names_are_left_alone():
    r = Redactor()
    code = "token = make_token()\npassword = pw\nprint(len(password))\n"
    assert r.code(code) == code


def test_outputs_stream_display_error_and_json():
    r = Redactor()
    known_secrets.remember("from-getpass-xyz")
    outs = [
        {"output_type": "stream", "name": "stdout", "text": "pw=from-getpass-xyz token: abcdef123\n"},
        {"output_type": "display_data", "data": {"text/plain": KEY_BLOCK, "application/json": {"secret": "v-77777"},
                                                 "image/png": "iVBORw0KGgo="}, "metadata": {}},
        {"output_type": "error", "ename": "ValueError", "evalue": "bad password='zzz-4444'",
         "traceback": ["line with from-getpass-xyz"]},
    ]
    red = [r.output(o) for o in outs]
    blob = repr(red)
    for s in ("from-getpass-xyz", "abcdef123", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "v-77777", "zzz-4444"):
        assert s not in blob, s
    assert "BEGIN OPENSSH PRIVATE KEY" in red[1]["data"]["text/plain"]  # the marker keeps the shape
    assert red[1]["data"]["image/png"] == "iVBORw0KGgo="


def test_key_block_without_end_is_redacted_to_the_end():
    r = Redactor()
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\n(truncated)"
    assert "MIIEpAIBAAKCAQEA1234" not in r.text(text)


def test_learn_from_namespace_getpass_and_secret_names():
    r = Redactor()
    r.learn_from_namespace("from getpass import getpass\npw = getpass()\nmy_token = compute()\nn = 3",
                           {"pw": "typed-in-secret", "my_token": "computed-token-1", "n": 3})
    assert r.text("typed-in-secret computed-token-1 3") == f"{MARK} {MARK} 3"
