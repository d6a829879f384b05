"""mlfrontends.pinn: back-propagation-free PINN training on the simulated photonic core.

Workload module: ``mlfrontends.pinn.workload`` (``Config``, ``run``; kind ``pinn``), built
from ``config`` (the schema), ``network`` (the network, digital or on the photonic core),
``sampling`` (collocation points and causal weights), ``state`` (the typed training state
and its checkpoint layout), ``train`` (the training loop), ``finish`` (the electronic
finish) and ``report`` (evaluation, metrics, figures, report.md).
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
