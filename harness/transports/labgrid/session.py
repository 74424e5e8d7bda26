"""The process's connection to labgrid coordinators.

labgrid's client is asyncio code built around one `ClientSession` per process and event loop, while
hilbench measures devices from a pool of threads. So one daemon thread runs one event loop for the
whole process, holding one session per coordinator address, and every call from a lane thread is a
coroutine submitted to that loop: the session's place and resource tables, which the loop's message
pump updates, are only ever read on the loop's own thread.

A place belongs to the identity `host/user` (labgrid's LG_HOSTNAME/LG_USERNAME), not to a process:
if this process dies without releasing, the place stays acquired. Each acquisition is therefore
remembered here and released by an `atexit` hook as a last resort (Ctrl-C during interpreter
shutdown, an exception nobody caught); the transport's close() is the normal path, and a place left
behind by a process that died without either is taken back by the next run (`claims`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.errors import ConfigError, InfraError
from harness.transports.labgrid import claims

_log = logging.getLogger(__name__)
T = TypeVar("T")
FREED_RETRIES = 3  # a place released while we asked for it: ask again at once this often
CALL_TIMEOUT = 30.0  # one gRPC round trip to the coordinator; it answers in milliseconds when alive
INSTALL_HINT = "pip install 'hilbench[labgrid]'"


def require_labgrid(device_id: str) -> None:
    """Refuse a labgrid device in one line when labgrid is not installed."""
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"device '{device_id}': the labgrid transport needs the labgrid client library ({exc}); "
            f"install it with {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class Resource:
    """One resource of an acquired place, as its exporter describes it."""

    name: str
    cls: str
    params: dict
    avail: bool


@dataclass(frozen=True)
class PlaceInfo:
    """A place as the coordinator describes it to anyone, acquired or not."""

    name: str
    tags: dict[str, str]
    matches: list[str]
    resources: list[Resource]  # what its matches find among the published resources now
    acquired: str | None


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="labgrid-client", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_lock = threading.Lock()
_loop: _Loop | None = None
_sessions: dict[str, Coordinator] = {}
_held: set[tuple[str, str]] = set()  # (coordinator, place) acquired by this process and not released
_reserved: set[tuple[str, str]] = set()  # (coordinator, token) of reservations not yet cancelled


class Coordinator:
    """One coordinator as this process sees it (use `coordinator()`, never construct twice)."""

    def __init__(self, address: str, loop: _Loop):
        self.address = address
        self._loop = loop
        self._session: Any = None

    def _connect(self) -> None:
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager

        target = proxymanager.get_grpc_address(self.address, default_port=20408)

        async def start() -> Any:
            # the gRPC channel binds to the loop it is created on: build the session on our loop
            session = ClientSession(target, self._loop.loop)
            await session.start()
            return session

        try:
            self._session = self._loop.call(start())
        except Exception as exc:
            raise InfraError(f"labgrid coordinator {self.address}: cannot connect ({_why(exc)})") from None

    @property
    def identity(self) -> str:
        """Who the coordinator sees acquiring places: `host/user`."""
        return f"{self._session.gethostname()}/{self._session.getuser()}"

    def changed_at(self, place: str) -> float:
        """When the coordinator last changed the place (epoch seconds, its clock): read right after
        acquiring, the moment the place became ours, which orders controllers sharing a board."""

        async def read() -> float:
            await self._session.sync_with_coordinator()
            return float(self._session.places[place].changed)

        return self._loop.call(read())

    def try_acquire(self, place: str) -> str | None:
        """Acquire the place: None when it is ours now, else who holds it."""
        import grpc
        from labgrid.remote.generated import labgrid_coordinator_pb2

        async def acquire() -> str | None:
            for attempt in range(FREED_RETRIES + 1):
                try:
                    request = labgrid_coordinator_pb2.AcquirePlaceRequest(placename=place)
                    await self._session.stub.AcquirePlace(request)
                except grpc.aio.AioRpcError as exc:
                    await self._session.sync_with_coordinator()
                    p = self._session.places.get(place)
                    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and p is not None:
                        if p.acquired:
                            return str(p.acquired)
                        if attempt < FREED_RETRIES and "already acquired" in (exc.details() or ""):
                            continue  # its holder released it between our request and our look: ask again
                    raise InfraError(f"labgrid place '{place}' on {self.address}: {exc.details()}") from None
                await self._session.sync_with_coordinator()
                return None
            raise AssertionError("unreachable")

        holder = self._loop.call(acquire())
        if holder is None:
            with _lock:
                _held.add((self.address, place))
        return holder

    def reserve(self, place: str, priority: float) -> str:
        """Queue for the place at the coordinator, which serves reservations by priority, then age,
        and allocates the place to the first one once nobody holds it: waiting in line, not polling
        for a free moment that someone else may take first. Returns the reservation's token."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def create() -> str:
            main = pb.Reservation.Filter(filter={"name": place})
            request = pb.CreateReservationRequest(filters={"main": main}, prio=priority)
            response = await self._session.stub.CreateReservation(request)
            return str(response.reservation.token)

        token = self._rpc(create(), f"cannot reserve place '{place}'")
        with _lock:
            _reserved.add((self.address, token))
        return token

    def reservation(self, token: str) -> tuple[str, list[str]]:
        """The reservation's state (waiting, allocated, acquired, expired, invalid) and the places
        allocated to it. Polling also keeps it alive: the coordinator expires one 60 s after its last poll."""
        from labgrid.remote.common import Reservation
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def poll() -> tuple[str, list[str]]:
            response = await self._session.stub.PollReservation(pb.PollReservationRequest(token=token))
            res = Reservation.from_pb2(response.reservation)
            return res.state.name, [name for group in res.allocations.values() for name in group]

        return self._rpc(poll(), f"reservation {token}")

    def cancel(self, token: str) -> None:
        """Leave the queue (a reservation the coordinator already dropped is gone all the same)."""
        import grpc
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def cancel() -> None:
            try:
                await self._session.stub.CancelReservation(pb.CancelReservationRequest(token=token))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # "does not exist"
                    raise

        try:
            self._rpc(cancel(), f"cannot cancel reservation {token}")
        finally:
            with _lock:
                _reserved.discard((self.address, token))

    def blocker(self, place: str, token: str) -> str | None:
        """Who keeps the place from us now: `acquired by HOLDER`, `reserved for OWNER` (someone
        else's reservation has it), or None."""
        from labgrid.remote.common import Reservation
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def read() -> str | None:
            await self._session.sync_with_coordinator()
            p = self._session.places.get(place)
            if p is None:  # a reservation for it would wait forever
                known = ", ".join(sorted(self._session.places)) or "none"
                raise InfraError(f"labgrid coordinator {self.address} has no place '{place}' (places: {known})")
            if p.acquired:
                return f"acquired by {p.acquired}"
            if p.reservation and p.reservation != token:
                response = await self._session.stub.GetReservations(pb.GetReservationsRequest())
                for r in response.reservations:
                    res = Reservation.from_pb2(r)
                    if res.token == p.reservation:
                        return f"reserved for {res.owner}"
            return None

        return self._rpc(read(), f"place '{place}'")

    def _rpc(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        try:
            return self._loop.call(coro)
        except InfraError:
            raise
        except Exception as exc:
            details = getattr(exc, "details", None)
            why = details() if callable(details) else _why(exc)
            raise InfraError(f"labgrid coordinator {self.address}: {what} ({why})") from None

    def release(self, place: str) -> None:
        """Release the place if this identity still holds it (someone who kicked us keeps it)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2

        async def release() -> None:
            request = labgrid_coordinator_pb2.ReleasePlaceRequest(placename=place, fromuser=self.identity)
            await self._session.stub.ReleasePlace(request)
            await self._session.sync_with_coordinator()

        try:
            self._loop.call(release())
        finally:
            with _lock:
                _held.discard((self.address, place))

    def resources(self, place: str) -> list[Resource]:
        """The resources of a place this identity has acquired, as their exporters publish them now."""

        async def read() -> list[Resource]:
            await self._session.sync_with_coordinator()
            p = self._session.places[place]
            found = []
            for (name, cls), entry in self._session.get_target_resources(p).items():
                found.append(Resource(name, cls, dict(entry.params), bool(entry.avail)))
            return found

        try:
            return self._loop.call(read())
        except InfraError:
            raise
        except Exception as exc:
            raise InfraError(f"labgrid place '{place}' on {self.address}: {_why(exc)}") from None

    def places(self) -> list[PlaceInfo]:
        """Every place with its tags, matches and the resources its matches find (no acquisition
        needed: a serial port's address may be missing until someone acquires the place)."""

        async def read() -> list[PlaceInfo]:
            await self._session.sync_with_coordinator()
            out = []
            for name, p in sorted(self._session.places.items()):
                found = []
                for exporter, groups in sorted(self._session.resources.items()):
                    for group, entries in sorted(groups.items()):
                        for rname, entry in sorted(entries.items()):
                            match = p.getmatch((exporter, group, entry.cls, rname))
                            if match is not None:
                                shown = match.rename or rname
                                found.append(Resource(shown, entry.cls, dict(entry.params), bool(entry.avail)))
                matches = [str(m) for m in p.matches]
                out.append(PlaceInfo(name, dict(p.tags), matches, found, p.acquired or None))
            return out

        return self._rpc(read(), "cannot list places")


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _keep_root_logging() -> None:
    """labgrid's client reports an unreachable coordinator with the module-level `logging.error()`,
    which configures the root logger on the spot when it has no handler: a stray `ERROR:root:...`
    line before hilbench's own one-line error, and every later root record in that format. A handler
    that does what Python's last-resort handler does (WARNING and up, to stderr, message only) keeps
    the root logger configured, without those records of labgrid's that hilbench reports itself."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda r: not (r.name == "root" and "labgrid" in r.pathname))
    root.addHandler(handler)


def coordinator(address: str) -> Coordinator:
    """The process's session with a coordinator, connected on first use."""
    global _loop
    with _lock:
        if _loop is None:
            _keep_root_logging()
            _loop = _Loop()
            atexit.register(_release_all)
        c = _sessions.get(address)
        if c is None:
            c = _sessions[address] = Coordinator(address, _loop)
    if c._session is None:
        with _lock:
            if c._session is None:
                c._connect()
    return c


def _release_all() -> None:
    """Last resort at interpreter exit: whatever this process still holds goes back to the lab, and
    its places in the coordinator's queue are given up (they would expire within a minute anyway)."""
    with _lock:
        held = sorted(_held)
        reserved = sorted(_reserved)
    for address, token in reserved:
        try:
            _sessions[address].cancel(token)
        except Exception as exc:  # pragma: no cover - the coordinator went away first
            _log.warning("could not cancel labgrid reservation %s on %s: %s", token, address, _why(exc))
    for address, place in held:
        try:
            _sessions[address].release(place)
            claims.remove(address, place)
            _log.warning("released labgrid place '%s' on %s at exit", place, address)
        except Exception as exc:  # pragma: no cover - the coordinator went away first
            _log.warning("could not release labgrid place '%s' on %s: %s", place, address, _why(exc))
