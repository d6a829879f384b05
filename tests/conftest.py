"""Single-threaded numerics in tests: deterministic and robust on a shared 2-core machine
(torch intra-op threads, numba's thread pool and numpy's BLAS threads are all pinned)."""

import numba
import torch
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)
numba.set_num_threads(1)
threadpool_limits(1)
