"""mlfrontends.pinn: back-propagation-free PINN training on the simulated photonic core.

Workload module: ``mlfrontends.pinn.workload`` (``Config``, ``run``; kind ``pinn``).
"""

from .derivatives import ESTIMATORS, build_estimator
from .jet import Jet
from .models import MLP, DenseLinear, TTLinear, build_mlp, count_parameters
from .pdes import PDE, PDE_REGISTRY, build_pde
from .sparse_grid import SparseGrid, smolyak_gauss_hermite

__all__ = [
    "ESTIMATORS",
    "MLP",
    "PDE",
    "PDE_REGISTRY",
    "DenseLinear",
    "Jet",
    "SparseGrid",
    "TTLinear",
    "build_estimator",
    "build_mlp",
    "build_pde",
    "count_parameters",
    "smolyak_gauss_hermite",
]
