"""Which nodes a restart leaves out: the raylet probe."""

from __future__ import annotations

import socket

from raylift.ray_compat.nodes import accepts_connection, nodes_to_leave_out


def test_the_raylet_probe_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = server.getsockname()
        assert accepts_connection(address)
    assert not accepts_connection(address)  # closed now: refused at once


def test_no_candidates_leave_nothing_out() -> None:
    assert nodes_to_leave_out([]) == set()
