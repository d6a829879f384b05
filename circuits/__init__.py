"""circuits — component and circuit level: SAX (simphony) S-parameter models, a netlist builder
that turns a programmed hub mesh into a circuit, and gdsfactory layouts with layout-true
footprints.

The public API is exactly what this module re-exports. Importing it switches JAX to float64
(see :mod:`circuits.models`).
"""

from circuits.layout import (
    COMPONENTS,
    activate_pdk,
    analytic_mesh_area_um2,
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
from circuits.models import (
    MODELS,
    coupler_angle_rad,
    directional_coupler,
    mzi,
    mzi_netlist,
    phase_shifter,
    waveguide,
)
from circuits.netlist import BACKENDS, mesh_netlist, mesh_smatrix, sdict_to_transfer

__all__ = [
    "BACKENDS",
    "COMPONENTS",
    "MODELS",
    "activate_pdk",
    "analytic_mesh_area_um2",
    "attenuator_cell",
    "build",
    "cell_geometry_um",
    "compare_mesh_areas",
    "coupler_angle_rad",
    "directional_coupler",
    "footprint_um2",
    "layout_area_um2",
    "mesh_cell",
    "mesh_netlist",
    "mesh_smatrix",
    "mzi",
    "mzi_cell",
    "mzi_netlist",
    "phase_shifter",
    "render_png",
    "sdict_to_transfer",
    "settings_from_device",
    "sigma_column_cell",
    "tensor_core_cell",
    "waveguide",
    "write_gds",
]
