"""What the SQLite outbox costs per stage event, and what batching appends would save.

On a temporary file, with the daemon's :class:`sleepstream.sinks.outbox.Outbox` (WAL,
``synchronous=NORMAL``): ``--events`` appends of a 450-byte payload (one transaction
each, as the daemon does), then peek + ``ack_many`` in groups of 4 (the delivery side),
twice; then the same number of inserts 8 per transaction (raw SQL on the same
connection: the bound of what batching appends could give). Wall and CPU time per event;
writes ``bench/results/profiles/outbox_cost.txt``.

Usage: ``python bench/outbox_cost.py [--events 3000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

PAYLOAD = b"x" * 450  # about one stage event's JSON


def main() -> None:
    from sleepstream.sinks.outbox import Outbox

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=3000)
    n = p.parse_args().events
    m = machine()
    lines = [
        f"# bench/outbox_cost.py --events {n}: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
        f"{m['cpu']}, {m['cores']} cores, load average {os.getloadavg()[0]:.1f}, nice {os.nice(0)}",
        "",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp,
        Outbox(Path(tmp) / "o.sqlite") as box,
    ):
        for trial in range(2):
            t, c = time.perf_counter(), time.thread_time()
            for i in range(n):
                box.append(f"e{trial}-{i}", "sleepstream/dev/stage", PAYLOAD, "dev")
            wall, cpu = (time.perf_counter() - t) / n, (time.thread_time() - c) / n
            t = time.perf_counter()
            for _ in range(n // 4):
                box.ack_many([it.seq for it in box.peek(4)])
            ack = (time.perf_counter() - t) / n
            lines.append(
                f"append, one transaction per event: {wall * 1e3:.3f} ms wall, {cpu * 1e3:.3f} ms "
                f"CPU per event; peek + ack_many in groups of 4: {ack * 1e3:.3f} ms per event"
            )
        db = box.db
        t = time.perf_counter()
        for j in range(0, n, 8):
            db.execute("BEGIN IMMEDIATE")
            for i in range(j, min(n, j + 8)):
                db.execute(
                    "INSERT OR IGNORE INTO outbox(event_id, topic, payload, created, device) "
                    "VALUES (?,?,?,?,?)",
                    (f"b{i}", "sleepstream/dev/stage", PAYLOAD, time.time(), "dev"),
                )
            db.execute("COMMIT")
        lines.append(
            f"inserts 8 per transaction: {(time.perf_counter() - t) / n * 1e3:.3f} ms wall per event"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / "profiles" / "outbox_cost.txt").write_text(text)


if __name__ == "__main__":
    main()
