"""Bulk import of a JSON-lines file: validate, encode and append, across cores when it pays.

The file is cut into chunks of CHUNK_LINES lines. Each chunk is validated with
domain.records.parse_line and its records encoded into stored events by the library's Mapper
(FlightLedger.new_creation_event: the creation event alone, no aggregate object).
Large files are encoded by worker processes while the main process appends the previous chunk,
in file order, each chunk in one transaction (FlightLedger._store_new: duplicates in the file or
already in the log are counted, not appended). Small files, stdin and ledgers whose mapper
encrypts or compresses are handled in this process, chunk by chunk, with the same code.
Either way the summary is the same: recorded, duplicates, and every rejected line with its
number, field and reason, in file order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from multiprocessing.pool import AsyncResult, Pool
from typing import Any, BinaryIO

from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from domain.application import FlightLedger
from domain.ids import check_school
from domain.records import (
    CORRECTION_KINDS,
    Record,
    RecordError,
    RecordKind,
    parse_correction_line,
    parse_line,
)

CHUNK_LINES = 5000  # lines per chunk = at most this many records per transaction
PIPELINE_MIN_BYTES = 2_000_000  # about 4,000 flight lines: below this, start-up costs more
MAX_WORKERS = 2

Rejected = dict[str, Any]
Encoder = Callable[[Record], StoredEvent]


@dataclass
class ImportTotals:
    """What an import did so far."""

    recorded: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    lines: int = 0

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON summary."""
        return {"recorded": self.recorded, "duplicates": self.duplicates, "rejected": self.rejected}


BOM = b"\xef\xbb\xbf"


def decode_line(raw: bytes | str) -> str:
    """One line as text; invalid UTF-8 is a RecordError on field 'line' with its byte offset."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            "line", f"is not UTF-8 text ({exc.reason} at byte {exc.start + 1} of the line)"
        ) from None


def encode_lines(
    kind: RecordKind, first_line: int, lines: Sequence[bytes | str], encode: Encoder
) -> tuple[list[StoredEvent], list[Rejected]]:
    """Validate and encode lines numbered from first_line; blank lines are skipped.

    Every problem with one line (not UTF-8, not JSON, nested too deep, a field refused) is a
    rejection of that line with its number, field and reason; it never stops the import.
    """
    stored: list[StoredEvent] = []
    rejected: list[Rejected] = []
    for number, raw in enumerate(lines, start=first_line):
        if not raw.strip():
            continue
        try:
            record = parse_line(kind, decode_line(raw))
        except RecordError as exc:
            rejected.append({"line": number, "field": exc.field, "reason": exc.reason})
        else:
            stored.append(encode(record))
    return stored, rejected


_ENCODING_LEDGER: list[FlightLedger] = []  # per worker process: an in-memory ledger (no I/O)


def worker_encoder(school: str, actor: str, timestamp: datetime) -> Encoder:
    """A worker process's encoder: the library's mapper of an in-memory FlightLedger, so the
    same transcodings as the importing ledger's (pool_encoding checks nothing else differs)."""
    if not _ENCODING_LEDGER:
        _ENCODING_LEDGER.append(FlightLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    return _encoder(_ENCODING_LEDGER[0], school, actor, timestamp)


def encode_chunk(
    kind: RecordKind,
    school: str,
    actor: str,
    timestamp: datetime,
    first_line: int,
    lines: list[bytes],
) -> tuple[list[StoredEvent], list[Rejected]]:
    """The worker-process task: encode_lines with worker_encoder (picklable arguments)."""
    return encode_lines(kind, first_line, lines, worker_encoder(school, actor, timestamp))


def _chunks(handle: BinaryIO) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines) for each chunk; a BOM opening the file is skipped."""
    first = 1
    while True:
        lines = list(islice(handle, CHUNK_LINES))
        if not lines:
            return
        if first == 1 and lines[0].startswith(BOM):
            lines[0] = lines[0][len(BOM) :]
        yield first, lines
        first += len(lines)


def pool_encoding(ledger: FlightLedger) -> bool:
    """True when encode_chunk's mapper writes what this ledger's mapper would write: the
    library's own, with no cipher or compressor (the worker processes do not have the key)."""
    mapper = ledger.mapper
    return (
        type(mapper) is Mapper
        and type(mapper.transcoder) is JSONTranscoder
        and not mapper.cipher
        and not mapper.compressor
    )


def pipeline_wanted(path: str | None) -> bool:
    """Worker processes pay off only for large files on a machine with more than one core."""
    if path is None or (os.cpu_count() or 1) < 2:
        return False
    try:
        return os.path.getsize(path) >= PIPELINE_MIN_BYTES
    except OSError:
        return False


def _worker_signals() -> None:
    """Pool workers die on SIGTERM and leave Ctrl-C to the importing process."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_pool() -> Pool:
    """Worker processes for encode_chunk, forked from a clean fork server where available.

    Forking the calling process itself is unsafe once it runs threads (a lock held by another
    thread stays held in the child forever) and hands the children its Python signal handlers,
    and Pool.terminate() relies on SIGTERM killing them. The fork server is a fresh
    single-threaded process that has imported this module once, so children still start fast.
    Call it before the ledger opens its database connections, so no connection is inherited.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload([__name__])
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    return context.Pool(workers, initializer=_worker_signals)


def import_lines(
    ledger: FlightLedger,
    kind: RecordKind,
    handle: BinaryIO,
    *,
    school: str,
    actor: str,
    pool: Pool | None = None,
    on_chunk: Callable[[ImportTotals], None] | None = None,
) -> ImportTotals:
    """Import every line of handle; with a pool (and direct encoding), encode in its workers."""
    check_school(school)
    totals = ImportTotals()

    def append(stored: list[StoredEvent], rejected: list[Rejected], lines: int) -> None:
        result = ledger._store_new(stored)
        totals.recorded += result.recorded
        totals.duplicates += result.duplicates
        totals.rejected.extend(rejected)
        totals.lines += lines
        if on_chunk is not None:
            on_chunk(totals)

    chunks = _chunks(handle)
    if kind in CORRECTION_KINDS:
        _import_corrections(ledger, kind, chunks, school, actor, totals, on_chunk)
        return totals
    if pool is not None and pool_encoding(ledger):
        _pipelined(ledger, kind, chunks, school, actor, pool, append)
        return totals
    for first, lines in chunks:
        encode = _encoder(ledger, school, actor, ledger.clock.now())
        stored, rejected = encode_lines(kind, first, lines, encode)
        append(stored, rejected, len(lines))
    return totals


def _import_corrections(
    ledger: FlightLedger,
    kind: RecordKind,
    chunks: Iterable[tuple[int, list[bytes]]],
    school: str,
    actor: str,
    totals: ImportTotals,
    on_chunk: Callable[[ImportTotals], None] | None,
) -> None:
    """Corrections apply to what is already recorded: one by one, each its own transaction."""
    for first, lines in chunks:
        for number, line in enumerate(lines, start=first):
            if not line.strip():
                continue
            try:
                record = parse_correction_line(kind, decode_line(line))
                recorded = ledger.record_correction(school, record, actor=actor)
            except RecordError as exc:
                totals.rejected.append({"line": number, "field": exc.field, "reason": exc.reason})
                continue
            if recorded:
                totals.recorded += 1
            else:
                totals.duplicates += 1
        totals.lines += len(lines)
        if on_chunk is not None:
            on_chunk(totals)


def _encoder(ledger: FlightLedger, school: str, actor: str, timestamp: datetime) -> Encoder:
    to_stored_event = ledger.mapper.to_stored_event

    def through_mapper(record: Record) -> StoredEvent:
        event = ledger.new_creation_event(school, record, actor=actor, at=timestamp)
        return to_stored_event(event)

    return through_mapper


def _pipelined(
    ledger: FlightLedger,
    kind: RecordKind,
    chunks: Iterable[tuple[int, list[bytes]]],
    school: str,
    actor: str,
    pool: Pool,
    append: Callable[[list[StoredEvent], list[Rejected], int], None],
) -> None:
    """Workers encode chunks ahead; this process appends them in file order."""
    in_flight: deque[tuple[AsyncResult[tuple[list[StoredEvent], list[Rejected]]], int]] = deque()
    ahead = 2 * MAX_WORKERS

    def finish_oldest() -> None:
        task, count = in_flight.popleft()
        stored, rejected = task.get()
        append(stored, rejected, count)

    try:
        for first, lines in chunks:
            args = (kind, school, actor, ledger.clock.now(), first, lines)
            in_flight.append((pool.apply_async(encode_chunk, args), len(lines)))
            if len(in_flight) >= ahead:
                finish_oldest()
    finally:  # also when reading fails half-way: what was read is appended, as before
        while in_flight:
            finish_oldest()
