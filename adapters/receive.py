"""Receiving feedback: the feedback service's delivery items, applied in the house's source.

For each house it serves, a `Receiver` holds one `SubscribeDeliveries` stream (a thread per
house) under the source adapter's certificate. Each item is converted to the opened,
source-neutral `adapters.records.Delivery` (`to_delivery`: a referral's person is opened with
the house's X25519 key), written into the house's target by the source's own `deliver`
(`SOURCES`), remembered in the adapter's state file, and then acknowledged (by a thread of
the house's own, those waiting together in one call):

- **exactly once per key**: an item whose key the state file has seen, or whose key is in the
  source already (a crash after writing, before remembering), is acknowledged without writing;
- **refused**: an item the source cannot take (a ValueError from the conversion or the source's
  checks, an envelope that does not open) is acknowledged with `failure` naming the field,
  never a value; the service tries again after a backoff and makes it a dead letter in the end;
- **not now**: an OSError (or a locked state file) writing it is not acknowledged; the service
  sends it again.

A stream that breaks (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) is opened again after an
exponential backoff with jitter; a refused one (PERMISSION_DENIED, INVALID_ARGUMENT, ...) ends
that house's thread, said in `Receiver.stopped` and the log. Logs name houses, keys, kinds and
outcomes, never personal data.
"""

from __future__ import annotations

import datetime as dt
import enum
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from adapters.amazone import deliver as amazone_deliver
from adapters.deliveries import KINDS, to_delivery
from adapters.records import Delivery
from adapters.source import SourceSystem
from adapters.sources import SOURCES
from adapters.state import OpenAdviceRequest, State
from baken import sealed
from baken.backoff import Backoff
from baken.clock import AMSTERDAM, Clock, SystemClock
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import house_name

log = structlog.get_logger("baken.adapter.receive")

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
MAX_FAILURE = 200

# Stream errors that end a house's thread: retrying cannot help until someone changes the
# configuration (certificate, house, covenant). Every other code is retried with backoff.
FATAL = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
# At most this many acknowledgements a call (the contract's limit).
ACK_BATCH = 100
# Receipts of applied items are kept this long: far past any redelivery of their items.
RECEIPT_MEMORY = dt.timedelta(days=90)


def failure_text(error: Exception) -> str:
    """What AcknowledgeDelivery.failure says: the message (which starts with the field), with
    every quoted value replaced, on one line, at most MAX_FAILURE characters."""
    text = " ".join(_QUOTED.sub("…", str(error)).split())
    return (text or type(error).__name__)[:MAX_FAILURE]


# Errors writing an item that are the target's (a full disk, a locked or foreign file), not
# the item's: not acknowledged, so the item comes again.
_NOT_NOW: tuple[type[Exception], ...] = (
    OSError,
    sqlite3.Error,
    amazone_deliver.MutationFileError,
)


class DeliveryOutcome(enum.Enum):
    APPLIED = "applied"  # written into the source now
    ALREADY = "already applied"  # its key was there: nothing written
    REFUSED = "refused"  # the source cannot take it: acknowledged with a failure
    RETRY = "not applied now"  # the target could not be written: not acknowledged


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: DeliveryOutcome
    failure: str = ""  # REFUSED: what AcknowledgeDelivery.failure says
    error: str = ""  # RETRY: the error's type, for the log

    @property
    def acknowledge(self) -> bool:
        return self.outcome is not DeliveryOutcome.RETRY


class Applier:
    """Applies delivery items of one source's houses into its target directory, remembering
    each applied key (and each open advice request) in the adapter's state file. One per
    thread: it holds its own connection to the state file."""

    def __init__(
        self,
        source: SourceSystem,
        target: Path,
        state_path: Path,
        *,
        house_keys: Path | None,
        clock: Clock | None = None,
    ) -> None:
        self.source = source
        self._target = target
        self._state = State(state_path)
        self._house_keys = house_keys
        self._keys: dict[str, sealed.HouseKey] = {}
        self._clock = clock or SystemClock()

    def close(self) -> None:
        self._state.close()

    def path_for(self, house_id: str) -> Path:
        return self.source.delivery_target(self._target, house_id)

    def apply(self, message: pb.Delivery, house_id: str) -> Applied:
        """Write the item into `house_id`'s target once; do not acknowledge it."""
        try:
            if self._state.was_received(message.key):
                return Applied(DeliveryOutcome.ALREADY)
        except sqlite3.Error as error:
            return Applied(DeliveryOutcome.RETRY, error=type(error).__name__)
        if message.house != house_name(house_id):
            return Applied(DeliveryOutcome.REFUSED, "house: not the house of this stream")
        try:
            # A referral or an enrichment request carries the person sealed to the house.
            opens = message.kind == pb.DELIVERY_KIND_REFERRAL or message.HasField("referral")
            key = self._house_key(house_id) if opens else None
            delivery = to_delivery(message, key)
            written = self.source.deliver(self.path_for(house_id), delivery)
        except ValueError as error:
            return Applied(DeliveryOutcome.REFUSED, failure_text(error))
        except _NOT_NOW as error:
            return Applied(DeliveryOutcome.RETRY, error=type(error).__name__)
        try:
            self._state.received(
                delivery.key, house_id, self._clock.now(), _advice_request(delivery)
            )
            if delivery.kind == "advice-request-cancelled" and delivery.advice_request:
                # Withdrawn: the house's next advice no longer answers it.
                self._state.forget_advice_requests([delivery.advice_request])
        except sqlite3.Error as error:
            return Applied(DeliveryOutcome.RETRY, error=type(error).__name__)
        return Applied(DeliveryOutcome.APPLIED if written else DeliveryOutcome.ALREADY)

    def forget_old_receipts(self) -> int:
        return self._state.forget_received(self._clock.now() - RECEIPT_MEMORY)

    def _house_key(self, house_id: str) -> sealed.HouseKey | None:
        if house_id not in self._keys and self._house_keys is not None:
            try:
                self._keys[house_id] = sealed.load_private(self._house_keys, house_id)
            except sealed.SealError:
                return None  # the referral is refused naming the missing key
        return self._keys.get(house_id)


def _advice_request(delivery: Delivery) -> OpenAdviceRequest | None:
    d = delivery
    if d.kind != "advice-request" or d.source_record_id is None or d.advice_request is None:
        return None
    requested = d.occurred.astimezone(AMSTERDAM).date()
    return OpenAdviceRequest(d.advice_request, d.house_id, d.source_record_id, requested)


# -- the receiver ---------------------------------------------------------------------------------


class Receiver:
    """Subscribes to the deliveries of each house in `houses` (ids, all of `source`'s system)
    and applies them (see the module's doc). `start()` starts a thread per house; `stop()`
    cancels the streams and waits for the threads. The channel must carry the source
    adapter's certificate and is not closed here."""

    def __init__(
        self,
        channel: grpc.Channel,
        source: str,
        houses: Sequence[str],
        *,
        target: Path,
        state_path: Path,
        house_keys: Path | None = None,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        ack_timeout_s: float = 10.0,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source: not one of {', '.join(sorted(SOURCES))}")
        self.source = SOURCES[source]
        self.houses = tuple(dict.fromkeys(houses))
        self._stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        self._target = target
        self._state_path = state_path
        self._house_keys = house_keys
        self._clock = clock or SystemClock()
        # Between reconnects: 0.5 s doubling to a minute.
        self._backoff = backoff or Backoff(0.5, 60.0)
        self._ack_timeout = ack_timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._streams: dict[str, grpc.Call] = {}
        self._threads: list[threading.Thread] = []
        self._stopped: dict[str, str] = {}
        self._counts: dict[DeliveryOutcome, int] = dict.fromkeys(DeliveryOutcome, 0)

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the receiver runs already")
        applier = Applier(
            self.source, self._target, self._state_path, house_keys=None, clock=self._clock
        )
        try:
            dropped = applier.forget_old_receipts()
        finally:
            applier.close()
        if dropped:
            log.info("old receipts forgotten", source=self.source.system, count=dropped)
        for house_id in self.houses:
            thread = threading.Thread(
                target=self._run, args=(house_id,), name=f"receive-{house_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every stream and wait (up to `timeout` seconds) for the threads. An item
        being applied is finished; one written but not acknowledged comes again, and is then
        acknowledged without writing."""
        self._stop.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.cancel()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every house's thread has ended (refused, or stopped); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    @property
    def stopped(self) -> Mapping[str, str]:
        """House id -> why its stream was refused and its thread ended."""
        with self._lock:
            return dict(self._stopped)

    def counts(self) -> Mapping[str, int]:
        """Items so far per outcome ("applied", "already applied", "refused", ...)."""
        with self._lock:
            return {outcome.value: n for outcome, n in self._counts.items()}

    # -- one house ------------------------------------------------------------------------------

    def _run(self, house_id: str) -> None:
        applier = Applier(
            self.source,
            self._target,
            self._state_path,
            house_keys=self._house_keys,
            clock=self._clock,
        )
        acknowledgements = _Acknowledgements(self._stub, house_id, self._ack_timeout)
        failures = 0
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                received, code = self._subscribe(applier, house_id, acknowledgements)
                if code is None and self._stop.is_set():
                    return
                if code in FATAL:
                    return
                if received or time.monotonic() - started > self._backoff.cap:
                    failures = 0
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning(
                    "feedback stream ended; reconnecting",
                    house=house_id,
                    code=code.name if code else "OK",
                    retry_in_s=round(delay, 2),
                )
                self._stop.wait(delay)
        except Exception as error:  # a bug: say so, without the item's content
            log.error("receiver thread failed", house=house_id, error=type(error).__name__)
            with self._lock:
                self._stopped[house_id] = f"receiver failed: {type(error).__name__}"
        finally:
            acknowledgements.close(self._ack_timeout)
            applier.close()

    def _subscribe(
        self, applier: Applier, house_id: str, acknowledgements: _Acknowledgements
    ) -> tuple[bool, grpc.StatusCode | None]:
        """One stream until it ends: whether it brought items, and its error code (None when
        it ended cleanly or was cancelled by stop())."""
        received = False
        stream = self._stub.SubscribeDeliveries(
            pb.SubscribeDeliveriesRequest(house=house_name(house_id))
        )
        with self._lock:
            self._streams[house_id] = stream
        try:
            if self._stop.is_set():
                return received, None
            log.info("feedback stream subscribed", house=house_id, source=self.source.system)
            for message in stream:
                received = True
                self._handle(applier, house_id, message, acknowledgements)
                if self._stop.is_set():
                    break
            return received, None
        except grpc.RpcError as error:
            code = error.code()
            if self._stop.is_set() and code == grpc.StatusCode.CANCELLED:
                return received, None
            if code in FATAL:
                details = error.details() if isinstance(error, grpc.Call) else ""
                why = f"{code.name}: {details}" if details else code.name
                log.error("feedback stream refused; house stopped", house=house_id, reason=why)
                with self._lock:
                    self._stopped[house_id] = why
            return received, code
        finally:
            stream.cancel()
            with self._lock:
                self._streams.pop(house_id, None)

    def _handle(
        self,
        applier: Applier,
        house_id: str,
        message: pb.Delivery,
        acknowledgements: _Acknowledgements,
    ) -> None:
        kind = KINDS.get(message.kind, "unknown")
        bound = log.bind(house=house_id, key=message.key, kind=kind, attempt=message.attempt)
        result = applier.apply(message, house_id)
        with self._lock:
            self._counts[result.outcome] += 1
        if not result.acknowledge:
            bound.warning("delivery not applied; it comes again", error=result.error)
            return
        acknowledgements.put(message.key, result, bound)


class _Acknowledgements:
    """A house's acknowledgements, sent by a thread of their own while the stream's next items
    are applied: those waiting go together, in one AcknowledgeDeliveries call of at most
    ACK_BATCH. One that is not sent is not lost: its item comes again and is then acknowledged
    without being written."""

    def __init__(
        self, stub: feedback_service_pb2_grpc.FeedbackServiceStub, house_id: str, timeout: float
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        self._waiting: queue.SimpleQueue[tuple[str, Applied, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"acknowledge-{house_id}", daemon=True
        )
        self._thread.start()

    def put(self, key: str, result: Applied, bound: Any) -> None:
        self._waiting.put((key, result, bound))

    def close(self, timeout: float) -> None:
        """Send what waits, then end."""
        self._waiting.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            end = False
            while len(batch) < ACK_BATCH and not self._waiting.empty():
                more = self._waiting.get()
                if more is None:
                    end = True
                    break
                batch.append(more)
            try:
                self._send(batch)
            except Exception as error:  # a bug: say so; the items come again
                log.error("acknowledgements failed", error=type(error).__name__)
            if end:
                return

    def _send(self, batch: Sequence[tuple[str, Applied, Any]]) -> None:
        request = pb.AcknowledgeDeliveriesRequest(
            acknowledgements=[
                pb.AcknowledgeDeliveryRequest(key=key, failure=result.failure)
                for key, result, _ in batch
            ]
        )
        try:
            response = self._stub.AcknowledgeDeliveries(request, timeout=self._timeout)
        except grpc.RpcError as error:
            code = error.code()
            for _, result, bound in batch:
                bound.warning(
                    "acknowledgement not sent; the item comes again",
                    outcome=result.outcome.value,
                    code=code.name if code else None,
                )
            return
        gone = set(response.unknown_keys)
        for key, result, bound in batch:
            if key in gone:
                bound.info("delivery " + result.outcome.value + "; the service holds it no more")
            elif result.outcome is DeliveryOutcome.REFUSED:
                bound.warning("delivery refused by the source", failure=result.failure)
            else:
                bound.info("delivery " + result.outcome.value)
