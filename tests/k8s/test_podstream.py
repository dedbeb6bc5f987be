"""``transport/podstream.py`` on its own: the ``v4.channel.k8s.io`` framing, the kubeconfig's
proxy as websocket-client options, and that the network's failures are the only ones caught.
(End-to-end streams through the Kubernetes API simulator are in ``test_portforward.py``.)"""
from __future__ import annotations

import base64
import socket
from types import SimpleNamespace

import pytest
import websocket

from airavata_magic.transport.podstream import (DATA, ERROR, STREAM_ERRORS, close_ws, connect_stream, frame,
                                                new_stream, proxy_options)


def test_the_first_frame_of_each_channel_carries_the_port_and_later_ones_do_not():
    prefixed = {DATA: False, ERROR: False}
    port = (52805).to_bytes(2, "little")
    assert frame(b"\x00" + port, prefixed) == (DATA, b"")
    assert frame(b"\x00" + b"hello", prefixed) == (DATA, b"hello")  # no prefix any more
    assert frame(b"\x01" + port + b"refused", prefixed) == (ERROR, b"refused")
    assert frame("\x00text", prefixed) == (DATA, b"text")  # text frames are bytes too


def _cfg(**kw):
    base = dict(proxy=None, proxy_headers=None, no_proxy=None)
    return SimpleNamespace(**{**base, **kw})


def test_proxy_options_follow_the_kubeconfig():
    assert proxy_options(_cfg()) == {}
    opts = proxy_options(_cfg(proxy="http://u%40x:p%3Aw@proxy.lab:3128", no_proxy="a.lab, b.lab"))
    assert opts == {"http_proxy_host": "proxy.lab", "http_proxy_port": 3128, "proxy_type": "http",
                    "http_proxy_auth": ("u@x", "p:w"), "http_no_proxy": ["a.lab", "b.lab"]}
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    opts = proxy_options(_cfg(proxy="http://proxy.lab", proxy_headers={"Proxy-Authorization": basic}))
    assert opts["http_proxy_port"] == 80 and opts["http_proxy_auth"] == ("alice", "s3cret")


def test_a_refused_connection_is_a_stream_error_and_the_stream_is_closed():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nobody listens there now
    cfg = SimpleNamespace(verify_ssl=True, ssl_ca_cert=None, assert_hostname=None, cert_file=None, key_file=None,
                          proxy=None, proxy_headers=None, no_proxy=None, auth_settings=lambda: {})
    url = f"ws://127.0.0.1:{port}/api/v1/namespaces/ns/pods/p/portforward?ports=1"
    ws = new_stream(url, cfg)
    with pytest.raises(STREAM_ERRORS):
        connect_stream(ws, url, cfg)
    assert not ws.connected
    close_ws(ws)  # closing again is quiet


def test_a_bug_is_not_taken_for_a_network_failure():
    """A mistake in our own code (here: a configuration object missing a field) surfaces."""
    cfg = SimpleNamespace(proxy=None, proxy_headers=None, no_proxy=None, auth_settings=lambda: {})
    with pytest.raises(AttributeError):
        new_stream("wss://127.0.0.1:1/x", cfg)  # no verify_ssl: not a network error
    assert not issubclass(AttributeError, STREAM_ERRORS)
    assert issubclass(websocket.WebSocketConnectionClosedException, STREAM_ERRORS)
