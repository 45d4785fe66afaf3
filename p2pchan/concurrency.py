"""Small structured-concurrency helpers on top of trio, and the TCP listen every server does."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from p2pchan.errors import P2pchanError, UserError


async def listen_tcp(host: str, port: int, option: str) -> list[trio.SocketListener]:
    """`trio.open_tcp_listeners`, failing with one line that names the `option` to change (a
    port in use is the operator's to fix, not a traceback)."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        raise listen_error(host, port, option, error) from None


def listen_error(host: str, port: int, option: str, error: OSError) -> UserError:
    if error.errno == errno.EADDRINUSE:
        reason = f"port {port} is in use (choose another with {option}; 0 picks a free one)"
    else:
        reason = error.strerror or str(error)
    return UserError(f"cannot listen on {host}:{port}: {reason}")


@asynccontextmanager
async def background_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for helper tasks that live exactly as long as the `async with` body.

    On exit the helpers are cancelled. An exception raised by the body itself propagates as it
    is, not wrapped in an ExceptionGroup, so a client's caller sees the `ChainError` it expects.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as error:  # re-raised unwrapped below, Cancelled included
            body_error = error
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


def single_error(error: BaseException) -> BaseException:
    """The exception to tell a user about: the only one inside nested groups, or the first of
    ours (a `P2pchanError`) if several; the group itself when it holds anything else."""
    found = [leaf for leaf in leaves(error) if not isinstance(leaf, trio.Cancelled)]
    if len(found) == 1:
        return found[0]
    if found and all(isinstance(leaf, P2pchanError) for leaf in found):
        return found[0]
    return error


def leaves(error: BaseException) -> list[BaseException]:
    """Every non-group exception inside `error` (itself, if it is not a group)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def only_expected(error: BaseException, expected: tuple[type[BaseException], ...]) -> bool:
    """True when every leaf of `error` is one of `expected` (no cancellation, no bug inside)."""
    return all(isinstance(leaf, expected) for leaf in leaves(error))
