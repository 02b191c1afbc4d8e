"""How many acknowledged records noida-db loses when it is stopped mid-stream.

    .venv/bin/python -m bench.broker_durability [--signal SIGTERM|SIGKILL] [--wrapper]

A producer (acks=all) publishes ``--records`` records at about 250/s; after
``--stop-after`` seconds noida-db gets ``--signal``, is started again on the same ports
and data dir, and the producer carries on. Then every acknowledged record is looked up
in the topic. ``--wrapper`` stops the ``noida-db`` console script's process group
instead of the server (how the stack ran it before session 4).

Session 4, 2-core machine, 6,000 records, one run each: SIGKILL lost 229 and 108;
SIGTERM to the wrapper's group 2 and 1; SIGTERM to the server 1 and 1 (the record in
flight). The wrapper's damage is the stack's 3 s orphan grace, not shown here: this
script gives the orphan all the time it needs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy.services.noida import server_binary
from deploy.services.processes import free_port
from deploy.services.service import find_executable

TOPIC = "durability"


def _start(binary: Path, kafka: int, es: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [str(binary), "start", "--only", "kafka,elasticsearch", "--host", "127.0.0.1"]
    command += ["--kafka-port", str(kafka), "--elasticsearch-port", str(es)]
    command += ["--data-dir", str(data)]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_kafka(bootstrap: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read_back(bootstrap: str, partitions: int) -> set[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "durability-check",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    seen: set[str] = set()
    idle = 0
    while idle < 10:  # ten empty polls in a row: the end of every partition
        message = consumer.poll(1.0)
        if message is None or message.error():
            idle += 1
            continue
        idle = 0
        seen.add(bytes(message.value() or b"").decode())
    consumer.close()
    return seen


def run(records: int, stop_after_s: float, sig: signal.Signals, wrapper: bool) -> dict[str, int]:
    binary = find_executable("noida-db") if wrapper else server_binary()
    assert binary is not None, "the noida-db console script is missing; run `make install`"
    kafka, es = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka}"
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "data", Path(tmp) / "noida.log"
        server = _start(binary, kafka, es, data, log)
        _wait_kafka(bootstrap)
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive for the future
        admin.create_topics([NewTopic(TOPIC, 4, 1)])[TOPIC].result()
        acked: set[str] = set()
        producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 120_000}
        )

        def delivered(err: object, message: object) -> None:
            if err is None:
                acked.add(message.value().decode())  # type: ignore[attr-defined]

        def feed() -> None:
            for index in range(records):
                producer.produce(
                    TOPIC, key=str(index % 97), value=str(index), on_delivery=delivered
                )
                producer.poll(0)
                time.sleep(0.004)
            producer.flush(120)

        feeding = threading.Thread(target=feed)
        feeding.start()
        time.sleep(stop_after_s)
        os.killpg(server.pid, sig)
        server.wait()
        time.sleep(3)  # the wrapper's orphaned server may still be saving
        server = _start(binary, kafka, es, data, log)
        feeding.join()
        seen = _read_back(bootstrap, 4)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    return {"records": records, "acknowledged": len(acked), "lost": len(acked - seen)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--stop-after", type=float, default=8.0)
    parser.add_argument("--signal", default="SIGTERM", choices=("SIGTERM", "SIGKILL"))
    parser.add_argument("--wrapper", action="store_true")
    args = parser.parse_args()
    print(run(args.records, args.stop_after, signal.Signals[args.signal], args.wrapper))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
