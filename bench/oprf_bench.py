"""What the OPRF (baken/oprf.py) costs on this machine: the server's evaluation (one scalar
multiplication after checking the element), one at a time and in batches of 1000, and the
client's share (blind and finalize: a hash to the group, an inversion and two multiplications).

    .venv/bin/python -m bench.oprf_bench [--count 20000]
"""

from __future__ import annotations

import argparse
import time

from baken import oprf


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({seconds / count * 1e6:.1f} us each)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    count = parser.parse_args().count
    secret = oprf.random_scalar()
    inputs = [f"bsn-{i:09d}".encode() for i in range(count)]

    started = time.perf_counter()
    blinded = [oprf.blind(x) for x in inputs]
    print(f"client blind:            {_rate(count, time.perf_counter() - started)}")

    elements = [b.element for b in blinded]
    started = time.perf_counter()
    single = [oprf.blind_evaluate(secret, e) for e in elements]
    print(f"server, one by one:      {_rate(count, time.perf_counter() - started)}")

    started = time.perf_counter()
    batched: list[bytes] = []
    for at in range(0, count, 1000):
        batched += oprf.blind_evaluate_batch(secret, elements[at : at + 1000])
    print(f"server, batches of 1000: {_rate(count, time.perf_counter() - started)}")
    assert batched == single

    started = time.perf_counter()
    outputs = [oprf.finalize(b, e) for b, e in zip(blinded, batched, strict=True)]
    print(f"client finalize:         {_rate(count, time.perf_counter() - started)}")

    started = time.perf_counter()
    direct = [oprf.evaluate(secret, x) for x in inputs]
    print(f"direct PRF (key holder): {_rate(count, time.perf_counter() - started)}")
    assert direct == outputs


if __name__ == "__main__":
    main()
