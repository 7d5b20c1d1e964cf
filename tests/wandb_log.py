"""Read back what W&B wrote offline: its ``run-*.wandb`` file is a LevelDB-style log (32 KiB
blocks of records with a 7-byte header: CRC32, length, type) of protobuf ``Record`` messages.
wandb 0.31 no longer ships a Python reader, so tests read it here."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    position, found, pending = HEADER, [], b""
    while position + HEADER <= len(data):
        if BLOCK - position % BLOCK < HEADER:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if position + HEADER + length > len(data):  # a record still being written
            break
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            found.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
            if kind == LAST:
                found.append(pending)
    return found


def history(run_dir: Path, wait_s: float = 60.0) -> list[dict]:
    """Every ``wandb.log`` call of the offline run in ``run_dir``, as {key: value}. W&B's service
    process may still be writing the file when ``finish()`` returns, so this waits (up to
    ``wait_s``) for the run's closing ``exit`` record before reading the rows."""
    from wandb.proto import wandb_internal_pb2

    (log,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        parsed = []
        for raw in records(log):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            parsed.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in parsed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in parsed
        if record.WhichOneof("record_type") == "history"
    ]
