#!/usr/bin/env python3
"""OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`.

    gen-prom.py SERIES START HOURS STEP > FILE

SERIES gauges `bench_value{instance,series}`, each a random walk (seeded by
START, so the output is reproducible) with one sample every STEP seconds over
[START, START + HOURS h). Random walks with six decimals compress in the TSDB
about as badly as busy real-world gauges do (~7 bytes a sample).
"""

import random
import sys


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    series, start, hours, step = (int(sys.argv[1]), int(sys.argv[2]),
                                  float(sys.argv[3]), int(sys.argv[4]))
    out = sys.stdout
    out.write("# HELP bench_value Benchmark series.\n# TYPE bench_value gauge\n")
    rng = random.Random(start)
    end = start + int(hours * 3600)
    for s in range(series):
        v = rng.random() * 1000
        lines = []
        for t in range(start, end, step):
            v += rng.gauss(0, 1)
            lines.append(f'bench_value{{instance="host-{s % 50}",series="{s}"}} {v:.6f} {t}\n')
        out.write("".join(lines))
    out.write("# EOF\n")


if __name__ == "__main__":
    main()
