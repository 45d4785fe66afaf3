"""The control RPC over a real Unix socket in one trio run: calls, errors, hostile connections,
socket files (mode, long paths, stale and live sockets) and lost connections."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from p2pchan.errors import ChainError, LocalProtocolError, P2pchanError, UserError
from p2pchan.net.rpc import (
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
    RpcParamError,
    RpcServer,
    param,
    parsed_param,
)
from p2pchan.net.rpc_client import MAX_LINE, LineReader, RpcClient, RpcError, open_datadir

DEADLINE = 10


async def echo(params: dict[str, Any]) -> Any:
    return params


async def fail_chain(params: dict[str, Any]) -> Any:
    raise ChainError("insufficient_funds", "balance 3 < 5")


async def fail_user(params: dict[str, Any]) -> Any:
    raise UserError("no such channel")


async def crash(params: dict[str, Any]) -> Any:
    raise ZeroDivisionError("a bug")


async def transfer(params: dict[str, Any]) -> Any:
    amount = param(params, "amount", int)
    timeout = param(params, "timeout", float, default=None)
    node_id = parsed_param(params, "node_id", bytes.fromhex)
    return {"amount": amount, "timeout": timeout, "node_id": node_id.hex()}


def make_server() -> RpcServer:
    server = RpcServer()
    for name, handler in [
        ("echo", echo),
        ("fail_chain", fail_chain),
        ("fail_user", fail_user),
        ("crash", crash),
        ("transfer", transfer),
    ]:
        server.register(name, handler)
    return server


@asynccontextmanager
async def serving(server: RpcServer, datadir: Path) -> AsyncIterator[Path]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(server.serve, datadir)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_connection(datadir: Path) -> AsyncIterator[tuple[trio.SocketStream, LineReader]]:
    dir_fd = open_datadir(datadir)
    try:
        stream = await trio.open_unix_socket(f"/proc/self/fd/{dir_fd}/rpc.sock")
    finally:
        os.close(dir_fd)
    async with stream:
        yield stream, LineReader(stream, 1 << 30)


async def reply_to(stream: trio.SocketStream, reader: LineReader, line: bytes) -> Any:
    await stream.send_all(line + b"\n")
    reply = await reader.next_line()
    assert reply is not None
    return json.loads(reply)


def request(method: str, request_id: Any = 1, **params: Any) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    ).encode()


async def test_round_trip_and_long_data_dir(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        datadir = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 60)
        datadir.mkdir(parents=True, mode=0o700)
        assert len(str(datadir / "rpc.sock")) > 200
        async with serving(make_server(), datadir) as path:
            assert path == datadir / "rpc.sock"
            mode = path.stat().st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600
            async with RpcClient.connect(datadir) as rpc:
                assert await rpc.call("echo", {"a": [1, "x"], "b": None}) == {
                    "a": [1, "x"],
                    "b": None,
                }
                assert await rpc.call("echo") == {}
        assert not path.exists()


async def test_concurrent_calls_on_one_client_are_matched_by_id(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        server = RpcServer()
        releases = [trio.Event() for _ in range(50)]

        async def wait_for_release(params: dict[str, Any]) -> Any:
            await releases[params["n"]].wait()
            return params["n"] * 10

        server.register("wait", wait_for_release)
        results: dict[int, int] = {}
        async with serving(server, tmp_path), RpcClient.connect(tmp_path) as rpc:

            async def call(n: int) -> None:
                results[n] = await rpc.call("wait", {"n": n})

            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(call, n)
                await trio.testing.wait_all_tasks_blocked()
                for n in reversed(range(50)):
                    releases[n].set()
                    await trio.testing.wait_all_tasks_blocked()
                    assert results[n] == n * 10
        assert results == {n: n * 10 for n in range(50)}


async def test_requests_in_flight_per_connection_are_bounded(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        server = RpcServer()
        release = trio.Event()
        running = 0
        most = 0

        async def hold(params: dict[str, Any]) -> Any:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1
            return None

        server.register("hold", hold)
        async with serving(server, tmp_path), RpcClient.connect(tmp_path) as rpc:
            async with trio.open_nursery() as nursery:
                for _ in range(MAX_IN_FLIGHT + 44):
                    nursery.start_soon(rpc.call, "hold")
                await trio.testing.wait_all_tasks_blocked()
                assert running == MAX_IN_FLIGHT
                release.set()
            assert most == MAX_IN_FLIGHT


async def test_handler_errors_become_json_rpc_errors(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(make_server(), tmp_path), RpcClient.connect(tmp_path) as rpc:
            with pytest.raises(RpcError) as chain:
                await rpc.call("fail_chain")
            assert str(chain.value) == "insufficient_funds: balance 3 < 5"
            assert (chain.value.type, chain.value.code) == ("ChainError", "insufficient_funds")
            assert chain.value.rpc_code == -32000
            assert isinstance(chain.value, P2pchanError)

            with pytest.raises(RpcError, match=r"^no such channel$") as user:
                await rpc.call("fail_user")
            assert (user.value.type, user.value.code) == ("UserError", None)

            with pytest.raises(RpcError, match="method not found: nope") as missing:
                await rpc.call("nope")
            assert missing.value.rpc_code == -32601

            with capture_logs() as logs:
                with pytest.raises(RpcError, match=r"^internal error$") as bug:
                    await rpc.call("crash", {"secret": "hunter2"})
                assert bug.value.rpc_code == -32603
            crashed = [entry for entry in logs if entry["event"] == "rpc_handler_crashed"]
            assert crashed and crashed[0]["method"] == "crash"
            assert crashed[0]["log_level"] == "error"
            assert "hunter2" not in repr(logs)
            assert await rpc.call("echo", {"still": "serving"}) == {"still": "serving"}


async def test_params_are_checked_by_the_helpers(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(make_server(), tmp_path), RpcClient.connect(tmp_path) as rpc:
            ok = await rpc.call("transfer", {"amount": 5, "node_id": "ab01"})
            assert ok == {"amount": 5, "timeout": None, "node_id": "ab01"}
            ok = await rpc.call("transfer", {"amount": 5, "timeout": 2, "node_id": "ab"})
            assert ok["timeout"] == 2.0
            bad: list[tuple[dict[str, Any], str]] = [
                ({"node_id": "ab"}, "missing parameter 'amount'"),
                ({"amount": "5", "node_id": "ab"}, "parameter 'amount' must be int, not str"),
                ({"amount": True, "node_id": "ab"}, "parameter 'amount' must be int, not bool"),
                ({"amount": 1, "timeout": "x", "node_id": "ab"}, "'timeout' must be float"),
                ({"amount": 1, "node_id": "zz"}, "invalid parameter 'node_id'"),
                ({"amount": 1, "node_id": 7}, "invalid parameter 'node_id'"),
            ]
            for params, message in bad:
                with pytest.raises(RpcError, match=message) as error:
                    await rpc.call("transfer", params)
                assert (error.value.rpc_code, error.value.type) == (-32602, "RpcParamError")


def test_param_helper_and_registration_without_a_server() -> None:
    with pytest.raises(LocalProtocolError, match="already registered"):
        make_server().register("echo", echo)
    assert param({"a": 1}, "a", int) == 1
    assert param({}, "a", int, default=7) == 7
    assert param({"a": None}, "a", str, default=None) is None
    assert param({"a": True}, "a", bool) is True
    with pytest.raises(RpcParamError, match="must be list, not dict"):
        param({"a": {}}, "a", list)


async def test_hostile_lines_get_errors_and_the_server_serves_on(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        handled = trio.Event()

        async def note(params: dict[str, Any]) -> Any:
            handled.set()
            return "never sent"

        server = make_server()
        server.register("note", note)
        async with serving(server, tmp_path), raw_connection(tmp_path) as (stream, reader):
            for line, code, request_id in [
                (b"\xff\xfe\x00 garbage", -32700, None),
                (b'{"jsonrpc": "2.0", "id": 1, "method"', -32700, None),
                (b"[" * 100_000, -32700, None),
                (b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "x": NaN}', -32700, None),
                (b'[{"jsonrpc": "2.0", "id": 1, "method": "echo"}]', -32600, None),
                (b"42", -32600, None),
                (b'{"jsonrpc": "2.0", "id": 3}', -32600, 3),
                (b'{"jsonrpc": "1.0", "id": 4, "method": "echo"}', -32600, 4),
                (b'{"jsonrpc": "2.0", "id": [5], "method": "echo"}', -32600, None),
                (b'{"jsonrpc": "2.0", "id": "6", "method": "echo", "params": [1]}', -32602, "6"),
                (b'{"jsonrpc": "2.0", "id": 7, "method": "nope"}', -32601, 7),
            ]:
                reply = await reply_to(stream, reader, line)
                assert reply["jsonrpc"] == "2.0"
                assert (reply["error"]["code"], reply["id"]) == (code, request_id), line[:60]
            # Notifications are executed and never answered, even when they fail.
            await stream.send_all(b'{"jsonrpc": "2.0", "method": "nope"}\n')
            await stream.send_all(b'{"jsonrpc": "2.0", "method": "note"}\n')
            await handled.wait()
            reply = await reply_to(stream, reader, b"\n  \n" + request("echo", "last", k=1))
            assert reply == {"jsonrpc": "2.0", "id": "last", "result": {"k": 1}}
            async with RpcClient.connect(tmp_path) as rpc:
                assert await rpc.call("echo", {"ok": 1}) == {"ok": 1}


async def test_an_oversized_line_is_answered_then_its_connection_closed(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(make_server(), tmp_path), RpcClient.connect(tmp_path) as rpc:
            with capture_logs() as logs:
                async with raw_connection(tmp_path) as (stream, reader):
                    await stream.send_all(b"x" * (MAX_LINE + 1))
                    reply = json.loads(await reader.next_line() or b"")
                    assert (reply["id"], reply["error"]["code"]) == (None, -32600)
                    assert await reader.next_line() is None
            dropped = [entry for entry in logs if entry["event"] == "rpc_connection_dropped"]
            assert dropped and dropped[0]["log_level"] == "warning" and dropped[0]["reason"]
            assert await rpc.call("echo", {"ok": 1}) == {"ok": 1}
            with pytest.raises(RpcError, match="larger than the node accepts"):
                await rpc.call("echo", {"big": "y" * MAX_LINE})
            assert await rpc.call("echo", {"ok": 2}) == {"ok": 2}


async def test_connections_beyond_the_limit_are_closed_at_once(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(make_server(), tmp_path), trio.open_nursery() as nursery:
            streams = []
            for n in range(MAX_CONNECTIONS):
                stream, reader = await nursery.start(hold_connection, tmp_path)
                assert await reply_to(stream, reader, request("echo", n)) == {
                    "jsonrpc": "2.0",
                    "id": n,
                    "result": {},
                }
                streams.append(stream)
            with capture_logs() as logs:
                async with raw_connection(tmp_path) as (_, reader):
                    assert await reader.next_line() is None
            assert [entry["reason"] for entry in logs] == ["too many connections"]
            await streams.pop().aclose()
            await trio.testing.wait_all_tasks_blocked()
            async with RpcClient.connect(tmp_path) as rpc:
                assert await rpc.call("echo", {"ok": 1}) == {"ok": 1}
            nursery.cancel_scope.cancel()


async def hold_connection(
    datadir: Path, task_status: trio.TaskStatus[tuple[trio.SocketStream, LineReader]]
) -> None:
    async with raw_connection(datadir) as connection:
        task_status.started(connection)
        await trio.sleep_forever()


async def test_a_client_leaving_mid_call_cancels_only_its_own_call(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        server = make_server()
        release = trio.Event()
        cancelled: list[str] = []

        async def wait(params: dict[str, Any]) -> Any:
            try:
                await release.wait()
            except trio.Cancelled:
                cancelled.append(params["who"])
                raise
            return params["who"]

        server.register("wait", wait)
        results: list[str] = []
        leaving_scope = trio.CancelScope()

        async with serving(server, tmp_path), RpcClient.connect(tmp_path) as staying:

            async def stay() -> None:
                results.append(await staying.call("wait", {"who": "staying"}))

            async def leave() -> None:
                with leaving_scope:
                    async with RpcClient.connect(tmp_path) as leaving:
                        await leaving.call("wait", {"who": "leaving"})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stay)
                nursery.start_soon(leave)
                await trio.testing.wait_all_tasks_blocked()
                leaving_scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert cancelled == ["leaving"]
                release.set()
            assert results == ["staying"]
            assert await staying.call("echo", {"ok": 1}) == {"ok": 1}


async def test_server_shutdown_fails_pending_calls_promptly(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        server = make_server()
        never = trio.Event()

        async def forever(params: dict[str, Any]) -> Any:
            await never.wait()

        server.register("forever", forever)
        async with trio.open_nursery() as nursery:
            path = await nursery.start(server.serve, tmp_path)
            async with RpcClient.connect(tmp_path) as rpc:
                async with trio.open_nursery() as calls:
                    for _ in range(3):
                        calls.start_soon(expect_lost, rpc)
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()
                with pytest.raises(RpcError, match=r"^connection to the node was lost$"):
                    await rpc.call("echo")
        assert not path.exists()


async def expect_lost(rpc: RpcClient) -> None:
    with pytest.raises(RpcError, match=r"^connection to the node was lost$") as lost:
        await rpc.call("forever")
    assert lost.value.rpc_code is None


def leave_stale_socket(datadir: Path) -> None:
    """What a killed server leaves behind: a bound socket file nobody listens on."""
    dir_fd = open_datadir(datadir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(f"/proc/self/fd/{dir_fd}/rpc.sock")
    finally:
        os.close(dir_fd)


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        leave_stale_socket(tmp_path)
        assert stat.S_ISSOCK((tmp_path / "rpc.sock").stat().st_mode)
        with pytest.raises(UserError, match="no node is running in"):
            async with RpcClient.connect(tmp_path):
                pass
        async with serving(make_server(), tmp_path), RpcClient.connect(tmp_path) as rpc:
            assert await rpc.call("echo", {"ok": 1}) == {"ok": 1}
            assert stat.S_IMODE((tmp_path / "rpc.sock").stat().st_mode) == 0o600


async def test_a_second_server_on_a_live_data_dir_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(make_server(), tmp_path) as path:
            with pytest.raises(UserError, match="another node is running"):
                await make_server().serve(tmp_path)
            assert path.exists()
            async with RpcClient.connect(tmp_path) as rpc:
                assert await rpc.call("echo", {"ok": 1}) == {"ok": 1}


async def test_a_file_in_the_sockets_place_is_not_removed(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        (tmp_path / "rpc.sock").write_text("mine")
        with pytest.raises(UserError, match="is not a socket"):
            await make_server().serve(tmp_path)
        assert (tmp_path / "rpc.sock").read_text() == "mine"


async def test_connecting_without_a_server_is_a_user_error(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        for datadir in (tmp_path, tmp_path / "missing"):
            with pytest.raises(UserError) as error:
                async with RpcClient.connect(datadir):
                    pass
            message = f"no node is running in {datadir} (cannot connect to its rpc.sock)"
            assert str(error.value) == message


async def test_a_malformed_reply_fails_pending_calls_instead_of_hanging(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        dir_fd = open_datadir(tmp_path)
        listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listener.bind(f"/proc/self/fd/{dir_fd}/rpc.sock")
        os.close(dir_fd)
        listener.listen()

        async def impostor() -> None:
            connection, _ = await listener.accept()
            with connection:
                await connection.recv(65536)
                await connection.send(b'{"jsonrpc": "2.0", "id": 1, "res\n')
                await trio.sleep_forever()

        with listener:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(impostor)
                async with RpcClient.connect(tmp_path) as rpc:
                    with pytest.raises(RpcError, match="connection to the node was lost"):
                        await rpc.call("info")
                nursery.cancel_scope.cancel()
