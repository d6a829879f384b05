"""circuits — component and circuit level: a programmed hub mesh as a SAX circuit of
simphony's own library components (couplers, waveguides), its S-matrix, and gdsfactory layouts
with layout-true footprints.

The public API is exactly what this module re-exports (``__all__``). Submodules load on first
use (PEP 562), so ``import circuits`` stays cheap for code that needs neither gdsfactory nor
JAX. Nothing here changes JAX's process-wide settings: the circuit solvers run in float64 inside
a scoped ``jax.enable_x64`` (:mod:`circuits.models`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS: dict[str, str] = {
    # library component models and the hub → library parameter mapping (circuits.models)
    "MODELS": "circuits.models",
    "ArmWaveguide": "circuits.models",
    "common_path_factor": "circuits.models",
    "coupler": "circuits.models",
    "coupler_angle_rad": "circuits.models",
    "coupling_from_angle": "circuits.models",
    "mzi": "circuits.models",
    "mzi_netlist": "circuits.models",
    "shifter_index_change": "circuits.models",
    # netlist builder and S-matrix of a programmed hub mesh (circuits.netlist)
    "BACKENDS": "circuits.netlist",
    "hub_settings": "circuits.netlist",
    "mesh_netlist": "circuits.netlist",
    "mesh_path_factor": "circuits.netlist",
    "mesh_sections": "circuits.netlist",
    "mesh_smatrix": "circuits.netlist",
    "sdict_to_transfer": "circuits.netlist",
    # gdsfactory layouts, footprints, GDS and PNG (circuits.layout)
    "COMPONENTS": "circuits.layout",
    "activate_pdk": "circuits.layout",
    "attenuator_cell": "circuits.layout",
    "build": "circuits.layout",
    "cell_geometry_um": "circuits.layout",
    "compare_mesh_areas": "circuits.layout",
    "footprint_um2": "circuits.layout",
    "layout_area_um2": "circuits.layout",
    "mesh_cell": "circuits.layout",
    "mzi_cell": "circuits.layout",
    "render_png": "circuits.layout",
    "settings_from_device": "circuits.layout",
    "sigma_column_cell": "circuits.layout",
    "tensor_core_cell": "circuits.layout",
    "write_gds": "circuits.layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'circuits' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from circuits.layout import (  # noqa: F401
        COMPONENTS,
        activate_pdk,
        attenuator_cell,
        build,
        cell_geometry_um,
        compare_mesh_areas,
        footprint_um2,
        layout_area_um2,
        mesh_cell,
        mzi_cell,
        render_png,
        settings_from_device,
        sigma_column_cell,
        tensor_core_cell,
        write_gds,
    )
    from circuits.models import (  # noqa: F401
        MODELS,
        ArmWaveguide,
        common_path_factor,
        coupler,
        coupler_angle_rad,
        coupling_from_angle,
        mzi,
        mzi_netlist,
        shifter_index_change,
    )
    from circuits.netlist import (  # noqa: F401
        BACKENDS,
        hub_settings,
        mesh_netlist,
        mesh_path_factor,
        mesh_sections,
        mesh_smatrix,
        sdict_to_transfer,
    )
