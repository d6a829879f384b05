"""Measured peak memory of a tensor-core run against ``tensor_core_memory_bytes``.

Each case runs the ``mesh_demo`` workload (program, realise, one batched call) in a fresh
process on the noisy ``bpfree_pinn_sim`` chip and reports the growth of its peak RSS over
the imports. The estimate is what ``photonic-sim validate`` / ``run`` check against the
available memory, so every ratio measured / estimate must stay below 1.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import subprocess
import sys

from photonic.core import tensor_core_memory_bytes
from photonic.textutil import markdown_table

CASES = [(256, 256, 256, 256), (512, 512, 16, 256), (1024, 1024, 16, 256),
         (1024, 1024, 64, 256), (1024, 1024, 16, 4096)]

PROBE = """
import resource, sys
import calibration
from photonic.demo import Config, run
from photonic.noise import NoiseConfig
from photonic.runio import RunContext
rows, cols, tile, batch = map(int, sys.argv[1:5])
ctx = RunContext(out=sys.argv[5], device=calibration.load_preset("bpfree_pinn_sim"),
                 noise=NoiseConfig.all(), show_progress=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(Config(rows=rows, cols=cols, tile=tile, batch=batch), ctx)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)  # kB → B
"""


def measured_bytes(rows: int, cols: int, tile: int, batch: int, out: str) -> int:
    res = subprocess.run([sys.executable, "-c", PROBE, str(rows), str(cols), str(tile),
                          str(batch), out], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for r, c, t, b in CASES:
            got = measured_bytes(r, c, t, b, out)
            est = tensor_core_memory_bytes(r, c, tile=t, batch=b)
            rows.append([f"{r}×{c}", t, b, f"{got / 2**20:.0f}", f"{est / 2**20:.0f}",
                         f"{got / est:.2f}"])
    print("\n".join(markdown_table(["matrix", "tile", "batch", "measured MiB",
                                    "estimate MiB", "measured / estimate"], rows)))


if __name__ == "__main__":
    main()
