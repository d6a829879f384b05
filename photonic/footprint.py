"""Analytic footprint of MZI meshes from the device parameters: the one home of the formula.

A mesh of N modes has ``depth`` columns (Clements N, Reck 2N − 3) of MZI cells of length
:attr:`photonic.DeviceParams.mzi_cell_length_um` (two couplers, two shifters, their bends and
contacts); its modes run at ``layout.mode_pitch_um``, so its bounding box spans the outer
waveguides' centres, (N − 1) pitches. The devices' overhang beyond the outer waveguides (half
a shifter's contact or metal width, a few µm) is not counted. Σ attenuators are MZI cells
stacked one per mode pair (:attr:`~photonic.DeviceParams.mzi_cell_height_um` = 2 pitches).
"""

from __future__ import annotations

from photonic.devices import DeviceParams
from photonic.mesh import mesh_layout

__all__ = ["mesh_width_um", "mesh_height_um", "mesh_area_um2", "sigma_area_um2"]


def mesh_width_um(device: DeviceParams, *, n: int, topology: str = "clements") -> float:
    """Length along the light of an n-mode mesh: depth × MZI cell length (0 for n < 2)."""
    return 0.0 if n < 2 else mesh_layout(int(n), topology).depth * device.mzi_cell_length_um


def mesh_height_um(device: DeviceParams, *, n: int) -> float:
    """Span of an n-mode mesh across the modes: (n − 1) × ``layout.mode_pitch_um``."""
    return max(int(n) - 1, 0) * device.layout.mode_pitch_um


def mesh_area_um2(device: DeviceParams, *, n: int, topology: str = "clements") -> float:
    """Bounding-box area (µm²) of an n-mode mesh: width × height."""
    return mesh_width_um(device, n=n, topology=topology) * mesh_height_um(device, n=n)


def sigma_area_um2(device: DeviceParams, *, n: int) -> float:
    """Area (µm²) of n Σ attenuator MZIs, one cell of length × two mode pitches each."""
    return int(n) * device.mzi_cell_length_um * device.mzi_cell_height_um
