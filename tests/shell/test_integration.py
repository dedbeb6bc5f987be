"""The marker protocol between the recorded bash and the recorder, byte by byte."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from airavata_magic.shell.integration import Marker, MarkerScanner, clean_output, read_facts

NONCE = "0123abcd"
START = b"\x1b]6973;" + NONCE.encode() + b";C\x07"
END = b"\x1b]6973;" + NONCE.encode() + b";D;2;7\x07"
STREAM = b"prompt$ " + START + b"out\x1b]6973;other;C\x07put\r\n" + END + b"next$ "


def _scan(chunks: list[bytes]) -> tuple[bytes, list[Marker]]:
    scanner = MarkerScanner(NONCE)
    text, markers = b"", []
    for c in chunks:
        for item in scanner.feed(c):
            if isinstance(item, bytes):
                text += item
            else:
                markers.append(item)
    return text, markers


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_markers_are_found_whatever_the_read_boundaries(cuts):
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0] + points, points + [len(STREAM)])]
    text, markers = _scan(chunks)
    # another nonce is plain output; ours are removed and parsed
    assert text == b"prompt$ out\x1b]6973;other;C\x07put\r\nnext$ "
    assert markers == [Marker("C"), Marker("D", 2, 7)]


def test_facts_file_is_read_once(tmp_path):
    (tmp_path / "7").write_bytes(b"/home/a b\x00  41  printf '%s\\n' \"x|y\" | wc -l\n")
    facts = read_facts(str(tmp_path), 7)
    assert facts.cwd == "/home/a b" and facts.history == (41, "printf '%s\\n' \"x|y\" | wc -l")
    assert not (tmp_path / "7").exists() and read_facts(str(tmp_path), 7) is None


def test_clean_output_drops_terminal_codes_and_keeps_last_redraw():
    raw = b"\x1b[?2004l\r\x1b[31mred\x1b[0m\r\n 10%\r 50%\r100%\r\ndone\r\n"
    assert clean_output(raw) == "red\n100%\ndone\n"
