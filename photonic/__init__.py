"""photonic — device-level simulator of MZI-mesh photonic tensor cores (the hub).

The public API is exactly what this module re-exports.
"""

from photonic.core import (
    CoreCounts,
    Mesh,
    TensorCore,
    equal_rows,
    optical_matmul,
    program_tiles,
)
from photonic.cost import CostParams, CostReport, Stage, TrainingStep, estimate_cost
from photonic.decompose import MeshPhases, decompose, reconstruct
from photonic.devices import (
    ConverterParams,
    CouplerParams,
    CrosstalkParams,
    DetectorParams,
    DeviceParams,
    LaserParams,
    LayoutParams,
    ModulatorParams,
    MziParams,
    PhaseDacParams,
    PhaseShifterParams,
    TiaParams,
    VariationParams,
)
from photonic.layers import MODES, PhotonicLinear, PhotonicMatrix, TTPhotonicLinear, convert_linear
from photonic.mesh import TOPOLOGIES, MeshLayout, mesh_layout, transfer_matrix
from photonic.mzi import mzi_matrix
from photonic.noise import (
    MeshErrors,
    NoiseConfig,
    precompensate_crosstalk,
    quantize_phase,
    sample_mesh_errors,
)

__version__ = "0.1.0"
"""Package version, written into every run's ``config.resolved.yaml``."""

__all__ = [
    "MODES",
    "equal_rows",
    "ConverterParams",
    "CoreCounts",
    "CostParams",
    "CostReport",
    "CouplerParams",
    "CrosstalkParams",
    "DetectorParams",
    "DeviceParams",
    "LaserParams",
    "LayoutParams",
    "Mesh",
    "MeshErrors",
    "MeshLayout",
    "MeshPhases",
    "ModulatorParams",
    "MziParams",
    "PhaseDacParams",
    "NoiseConfig",
    "PhaseShifterParams",
    "PhotonicLinear",
    "PhotonicMatrix",
    "TTPhotonicLinear",
    "convert_linear",
    "TOPOLOGIES",
    "Stage",
    "TensorCore",
    "TiaParams",
    "TrainingStep",
    "VariationParams",
    "__version__",
    "decompose",
    "estimate_cost",
    "mesh_layout",
    "mzi_matrix",
    "optical_matmul",
    "program_tiles",
    "precompensate_crosstalk",
    "quantize_phase",
    "reconstruct",
    "sample_mesh_errors",
    "transfer_matrix",
]
