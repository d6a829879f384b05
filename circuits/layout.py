"""Layouts on gdsfactory: MZI cell, Clements / Reck meshes, the full SVD tensor core.

Geometry (all lengths in µm): mode ``m`` of a mesh runs along ``y = −m · mode_pitch_um``;
column ``ℓ`` of the hub's :func:`photonic.mesh_layout` spans
``x ∈ [ℓ · L, (ℓ + 1) · L]`` with ``L`` the length of :func:`mzi_cell`. Each MZI cell is the
physical MZI of the hub convention: an external heater (φ) on its top input, S-bends to a
balanced (equal-arm) 2×2-MMI MZI of the generic PDK whose top-arm heater (θ) has the same
length, S-bends back to the mode pitch. Idle (mode, column) slots get a straight waveguide
of length ``L``, so cells abut port to port and the mesh is routed by placement; the GDS is
hierarchical (one cell definition referenced K times), which keeps N = 32 fast.

Electrical routing of the heaters to pads is *not* drawn: heater via stacks are the
electrical ports of each cell, where a routing layer would connect.

Call ``gf.gpdk.PDK.activate()`` (done by :func:`activate_pdk`) before building.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gdsfactory as gf
import numpy as np

from photonic import DeviceParams, mesh_layout
from photonic.footprint import mesh_area_um2
from photonic.runio import atomic_write_bytes, new_figure
from photonic.textutil import did_you_mean

__all__ = [
    "COMPONENTS",
    "activate_pdk",
    "mzi_cell",
    "attenuator_cell",
    "sigma_column_cell",
    "mesh_cell",
    "tensor_core_cell",
    "build",
    "settings_from_device",
    "cell_geometry_um",
    "footprint_um2",
    "layout_area_um2",
    "compare_mesh_areas",
    "write_gds",
    "render_png",
]

HEATER_LENGTH_UM = 100.0  # SimPhony device library's thermal shifter, 100 × 25 µm
CELL_SPACING_UM = 10.0  # edge-to-edge gap of vertically stacked MZIs (assumed, thermal)
MODE_PITCH_UM = (51.0 + CELL_SPACING_UM) / 2  # two modes per 51 µm tall balanced PDK MZI
SBEND_LENGTH_UM = 40.0  # Bezier S-bend length for the ±(pitch/2) fan-in / fan-out
LEAD_LENGTH_UM = 16.0  # clears the 15.9 µm via stack overhang of the PDK heater


def activate_pdk() -> None:
    """Activate gdsfactory's generic PDK (idempotent)."""
    gf.gpdk.PDK.activate()


def _check_pitch(mode_pitch_um: float, core: gf.Component) -> None:
    """Two mode pitches must hold one MZI: stacked cells may touch but never overlap."""
    if not 2 * mode_pitch_um >= core.dysize:
        raise ValueError(
            f"mode_pitch_um={mode_pitch_um} is too small: two modes must hold one "
            f"{core.dysize:g} µm tall MZI, so mode_pitch_um ≥ {core.dysize / 2:g}"
        )


@gf.cell
def mzi_cell(
    *,
    heater_length_um: float = HEATER_LENGTH_UM,
    mode_pitch_um: float = MODE_PITCH_UM,
    sbend_length_um: float = SBEND_LENGTH_UM,
    lead_length_um: float = LEAD_LENGTH_UM,
) -> gf.Component:
    """Physical MZI on two modes at ``mode_pitch_um``; heaters of ``heater_length_um``;
    S-bends of ``sbend_length_um``; straight leads of ``lead_length_um`` either side of the
    external heater (they must clear its via stacks).

    Ports ``in0`` (0, 0), ``in1`` (0, −pitch), ``out0`` (L, 0), ``out1`` (L, −pitch); index 0 is
    the top mode, as in the hub and :mod:`circuits.models`. Light meets: external heater φ on
    ``in0``, input MMI, internal heater θ on the top arm, output MMI.
    """
    core = gf.components.mzi2x2_2x2_phase_shifter(length_x=heater_length_um, delta_length=0)
    _check_pitch(mode_pitch_um, core)
    c = gf.Component()
    p = float(mode_pitch_um)
    lead = float(lead_length_um)
    ext_len = 2 * lead + heater_length_um

    lead_in = c << gf.components.straight(length=lead)
    heater = c << gf.components.straight_heater_metal(length=heater_length_um)
    heater.dmove((lead, 0))
    lead_out = c << gf.components.straight(length=lead)
    lead_out.dmove((lead + heater_length_um, 0))
    bottom = c << gf.components.straight(length=ext_len)
    bottom.dmove((0, -p))

    half_gap = abs(core.ports["o2"].dcenter[1])  # MMI port half separation
    dy = p / 2 - half_gap
    bend = gf.components.bend_s(size=(sbend_length_um, dy))

    fan_in_top = c << bend
    fan_in_top.dmirror_y()
    fan_in_top.dmove((ext_len, 0))
    fan_in_bot = c << bend
    fan_in_bot.dmove((ext_len, -p))

    mzi = c << core
    x_mzi = ext_len + sbend_length_um - core.ports["o2"].dcenter[0]
    mzi.dmove((x_mzi, -p / 2))

    x_out = mzi.ports["o3"].dcenter[0]
    fan_out_top = c << bend
    fan_out_top.dmove((x_out, -p / 2 + half_gap))
    fan_out_bot = c << bend
    fan_out_bot.dmirror_y()
    fan_out_bot.dmove((x_out, -p / 2 - half_gap))

    c.add_port("in0", port=lead_in.ports["o1"])
    c.add_port("in1", port=bottom.ports["o1"])
    c.add_port("out0", port=fan_out_top.ports["o2"])
    c.add_port("out1", port=fan_out_bot.ports["o2"])
    c.info["heater_length_um"] = float(heater_length_um)
    c.info["num_heaters"] = 2
    return c


@gf.cell
def attenuator_cell(*, heater_length_um: float = HEATER_LENGTH_UM) -> gf.Component:
    """Σ element: a 1×1 MZI (MMI splitter / combiner, heater θ on the top arm).

    Transmission cos²(θ/2)-type amplitude on one mode; ports ``in0`` (0, 0), ``out0`` (L, 0).
    """
    c = gf.Component()
    core = c << gf.components.mzi(
        straight_x_top="straight_heater_metal", length_x=heater_length_um, delta_length=0
    )
    core.dmove((-core.ports["o1"].dcenter[0], 0))
    c.add_port("in0", port=core.ports["o1"])
    c.add_port("out0", port=core.ports["o2"])
    c.info["num_heaters"] = 1
    return c


def _mode_y(m: int, mode_pitch_um: float) -> float:
    return -m * float(mode_pitch_um)


@gf.cell
def mesh_cell(
    *,
    n: int = 4,
    topology: str = "clements",
    heater_length_um: float = HEATER_LENGTH_UM,
    mode_pitch_um: float = MODE_PITCH_UM,
    sbend_length_um: float = SBEND_LENGTH_UM,
    lead_length_um: float = LEAD_LENGTH_UM,
) -> gf.Component:
    """N×N MZI mesh placed and routed in the hub's column layout.

    ``topology`` is a key of the hub's ``photonic.mesh.TOPOLOGIES`` ("clements", "reck").
    Ports ``in{m}`` at x = 0 and ``out{m}`` at x = depth · L, y = −m · mode_pitch_um.
    ``info``: ``num_mzis``, ``depth``, ``cell_length_um``, ``num_heaters``.
    """
    lay = mesh_layout(int(n), topology)
    cell = mzi_cell(heater_length_um=heater_length_um, mode_pitch_um=mode_pitch_um,
                    sbend_length_um=sbend_length_um, lead_length_um=lead_length_um)
    length = cell.ports["out0"].dcenter[0]
    bypass = gf.components.straight(length=length)

    c = gf.Component()
    busy = np.zeros((lay.depth, lay.n), dtype=bool)
    for m, col in zip(lay.modes.tolist(), lay.columns.tolist(), strict=True):
        ref = c << cell
        ref.dmove((col * length, _mode_y(m, mode_pitch_um)))
        busy[col, m] = busy[col, m + 1] = True
    for col, m in zip(*np.nonzero(~busy), strict=True):
        ref = c << bypass
        ref.dmove((col * length, _mode_y(int(m), mode_pitch_um)))
    for m in range(lay.n):
        y = _mode_y(m, mode_pitch_um)
        c.add_port(f"in{m}", center=(0.0, y), width=0.5, orientation=180, layer=(1, 0))
        c.add_port(
            f"out{m}", center=(lay.depth * length, y), width=0.5, orientation=0, layer=(1, 0)
        )
    c.info["num_mzis"] = lay.num_mzis
    c.info["depth"] = lay.depth
    c.info["cell_length_um"] = float(length)
    c.info["num_heaters"] = 2 * lay.num_mzis
    return c


@gf.cell
def sigma_column_cell(
    *,
    n: int = 4,
    heater_length_um: float = HEATER_LENGTH_UM,
    mode_pitch_um: float = MODE_PITCH_UM,
) -> gf.Component:
    """Σ column: one attenuator per mode, in two staggered sub-columns (even, then odd modes).

    An attenuator is taller than one mode pitch, so modes of equal parity share a sub-column
    (pitch 2 · mode_pitch_um); the other parity passes on a straight.
    """
    att = attenuator_cell(heater_length_um=heater_length_um)
    _check_pitch(mode_pitch_um, att)
    length = att.ports["out0"].dcenter[0]
    bypass = gf.components.straight(length=length)
    c = gf.Component()
    for m in range(int(n)):
        for sub in (0, 1):
            ref = c << (att if m % 2 == sub else bypass)
            ref.dmove((sub * length, _mode_y(m, mode_pitch_um)))
    for m in range(int(n)):
        y = _mode_y(m, mode_pitch_um)
        c.add_port(f"in{m}", center=(0.0, y), width=0.5, orientation=180, layer=(1, 0))
        c.add_port(f"out{m}", center=(2 * length, y), width=0.5, orientation=0, layer=(1, 0))
    c.info["num_attenuators"] = int(n)
    c.info["num_heaters"] = int(n)
    return c


@gf.cell
def tensor_core_cell(
    *,
    n: int = 4,
    topology: str = "clements",
    heater_length_um: float = HEATER_LENGTH_UM,
    mode_pitch_um: float = MODE_PITCH_UM,
    sbend_length_um: float = SBEND_LENGTH_UM,
    lead_length_um: float = LEAD_LENGTH_UM,
) -> gf.Component:
    """Full SVD tensor core W = U Σ V†: edge couplers, V† mesh, Σ column, U mesh, couplers.

    Light order left to right. ``info``: ``num_mzis`` (2 meshes + N attenuators),
    ``num_heaters``, ``num_edge_couplers``.
    """
    mesh = mesh_cell(
        n=n, topology=topology, heater_length_um=heater_length_um, mode_pitch_um=mode_pitch_um,
        sbend_length_um=sbend_length_um, lead_length_um=lead_length_um,
    )
    sigma = sigma_column_cell(n=n, heater_length_um=heater_length_um, mode_pitch_um=mode_pitch_um)
    coupler = gf.components.edge_coupler_silicon()
    io_len = coupler.ports["o2"].dcenter[0] - coupler.ports["o1"].dcenter[0]

    c = gf.Component()
    x = io_len
    v = c << mesh
    v.dmovex(x)
    x += mesh.ports["out0"].dcenter[0]
    s = c << sigma
    s.dmovex(x)
    x += sigma.ports["out0"].dcenter[0]
    u = c << mesh
    u.dmovex(x)
    x += mesh.ports["out0"].dcenter[0]
    for m in range(int(n)):
        y = _mode_y(m, mode_pitch_um)
        cin = c << coupler
        cin.dmirror_x()
        cin.dmove((io_len, y))
        cout = c << coupler
        cout.dmove((x, y))
        c.add_port(f"in{m}", port=cin.ports["o2"])
        c.add_port(f"out{m}", port=cout.ports["o2"])
    c.info["num_mzis"] = 2 * mesh.info["num_mzis"] + int(n)
    c.info["num_heaters"] = 2 * mesh.info["num_heaters"] + sigma.info["num_heaters"]
    c.info["num_edge_couplers"] = 2 * int(n)
    return c


# Registered layouts, looked up by the name a config or report uses.
COMPONENTS: dict[str, Callable[..., gf.Component]] = {
    "mzi": mzi_cell,
    "attenuator": attenuator_cell,
    "sigma_column": sigma_column_cell,
    "mesh": mesh_cell,
    "tensor_core": tensor_core_cell,
}


def build(design: str, **settings: Any) -> gf.Component:
    """Build the registered layout ``design`` (a key of :data:`COMPONENTS`) with ``settings``."""
    if design not in COMPONENTS:
        raise ValueError(
            f"design={design!r} is not a registered layout; valid choices: "
            f"{sorted(COMPONENTS)}{did_you_mean(design, COMPONENTS)}"
        )
    activate_pdk()
    return COMPONENTS[design](**settings)


def settings_from_device(device: DeviceParams) -> dict[str, float]:
    """Layout settings taken from a device preset: heater length, mode pitch, S-bend length
    and the external heater's lead length.

    ``heater_length_um = device.shifter.length_um`` (e.g. 61.6 µm for the Harris 2014 doped
    heater), ``mode_pitch_um = device.layout.mode_pitch_um`` (the pitch the hub's crosstalk
    model assumes), ``sbend_length_um = device.layout.sbend_length_um``,
    ``lead_length_um = device.layout.contact_length_um``. The couplers and arms are the
    generic PDK's own (2×2 MMIs), not the preset's. Use as
    ``build("mesh", n=8, **settings_from_device(device))`` (also "mzi", "tensor_core").
    """
    return {
        "heater_length_um": float(device.shifter.length_um),
        "mode_pitch_um": float(device.layout.mode_pitch_um),
        "sbend_length_um": float(device.layout.sbend_length_um),
        "lead_length_um": float(device.layout.contact_length_um),
    }


def cell_geometry_um(**settings: float) -> dict[str, float]:
    """Layout-true geometry of one mesh MZI cell, in the hub's device-parameter terms.

    ``mzi_length_um`` = ``column_pitch_um``: cell length (x-period of mesh columns);
    ``mzi_height_um`` = 2 · ``mode_pitch_um``: the row pitch of stacked MZIs, i.e. the
    footprint height per MZI including spacing, as ``photonic.MziParams.height_um`` is used by
    the hub's analytic area (depth · length · N/2 · height); ``bbox_height_um``: the cell's
    own bounding-box height.
    """
    mode_pitch_um = float(settings.get("mode_pitch_um", MODE_PITCH_UM))
    box = build("mzi", **settings).dbbox()
    return {
        "column_pitch_um": float(box.width()),
        "mode_pitch_um": float(mode_pitch_um),
        "mzi_length_um": float(box.width()),
        "mzi_height_um": 2.0 * float(mode_pitch_um),
        "bbox_height_um": float(box.height()),
    }


def footprint_um2(component: gf.Component) -> float:
    """Layout-true footprint: area of the component's bounding box in µm²."""
    box = component.dbbox()
    return float(box.width() * box.height())


def layout_area_um2(design: str = "mesh", **settings: Any) -> float:
    """Bounding-box area in µm² of the registered layout ``design`` built with ``settings``.

    Example: ``layout_area_um2("tensor_core", n=16, topology="clements",
    heater_length_um=61.6)``.
    """
    return footprint_um2(build(design, **settings))


def compare_mesh_areas(
    device: DeviceParams | None = None,
    ns: tuple[int, ...] = (4, 8, 16, 32),
    topologies: tuple[str, ...] = ("clements", "reck"),
) -> list[dict[str, float | int | str]]:
    """Layout-true vs analytic mesh areas of ``device`` (default: ``DeviceParams()``), one
    row per (topology, n).

    The layout is built from the preset's settings (:func:`settings_from_device`) and
    measured; the analytic area is the hub's :func:`photonic.footprint.mesh_area_um2`, from
    the device parameters alone (nothing measured on the layout enters it). Row keys:
    ``topology, n, num_mzis, depth, layout_area_um2, analytic_area_um2, gap`` with
    ``gap = layout / analytic − 1`` (0.03 means the layout is 3 % larger).
    """
    device = device or DeviceParams()
    settings = settings_from_device(device)
    rows: list[dict[str, float | int | str]] = []
    for topology in topologies:
        for n in ns:
            lay = mesh_layout(int(n), topology)
            layout_a = layout_area_um2("mesh", n=n, topology=topology, **settings)
            analytic_a = mesh_area_um2(device, n=n, topology=topology)
            rows.append({"topology": topology, "n": n, "num_mzis": lay.num_mzis,
                         "depth": lay.depth, "layout_area_um2": layout_a,
                         "analytic_area_um2": analytic_a, "gap": layout_a / analytic_a - 1.0})
    return rows


def write_gds(component: gf.Component, path: str | Path) -> Path:
    """Write ``component`` (with its hierarchy) to the GDS file ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(component.write_gds(path))


# Via arrays are hundreds of thousands of sub-µm squares hidden under their metal pads.
HIDDEN_LAYERS: tuple[tuple[int, int], ...] = ((40, 0), (43, 0), (44, 0))  # VIAC, VIA2, VIA1
_FLATTEN_MAX_INSTANCES = 32  # cells with more direct instances are walked, not flattened


def _cell_points(cell, *, recursive: bool) -> dict[tuple[int, int], tuple]:
    """Per GDS layer: all polygon vertices (µm) of ``cell`` as one array + split indices.

    ``recursive`` flattens the cell's children into it; otherwise only its own shapes.
    """
    kcell = cell.kdb_cell
    out = {}
    for layer_index in cell.kcl.layer_indexes():
        pts = []
        if recursive:
            it = kcell.begin_shapes_rec(layer_index)
            while not it.at_end():
                poly = it.shape().dpolygon
                if poly is not None:
                    poly = poly.transformed(it.dtrans())
                    pts.append(np.array([(q.x, q.y) for q in poly.each_point_hull()]))
                it.next()
        else:
            for shape in kcell.shapes(layer_index).each():
                if shape.dpolygon is not None:
                    pts.append(np.array([(q.x, q.y) for q in shape.dpolygon.each_point_hull()]))
        if pts:
            info = cell.kcl.get_info(layer_index)
            key = (info.layer, info.datatype)
            out[key] = (np.concatenate(pts), np.cumsum([len(q) for q in pts])[:-1])
    return out


def _collect(cell, trans, polys: dict, cache: dict) -> None:
    """Polygons of ``cell`` placed by ``trans``: flatten small cells once, walk big ones.

    A mesh is ~10³ references of a few cell definitions, so each definition's vertices are
    extracted once and only moved per reference (numpy), instead of flattening ~10⁵ polygons.
    """
    if len(cell.insts) > _FLATTEN_MAX_INSTANCES:
        for inst in cell.insts:
            _collect(inst.cell, trans * inst.dcplx_trans, polys, cache)
        placed = _cell_points(cell, recursive=False)
    else:
        if cell.name not in cache:
            cache[cell.name] = _cell_points(cell, recursive=True)
        placed = cache[cell.name]
    angle = np.deg2rad(trans.angle)
    rot = trans.mag * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if trans.is_mirror():
        rot = rot @ np.diag([1.0, -1.0])
    shift = np.array([trans.disp.x, trans.disp.y])
    for layer, (pts, splits) in placed.items():
        polys.setdefault(layer, []).extend(np.split(pts @ rot.T + shift, splits))


def render_png(
    component: gf.Component,
    path: str | Path,
    *,
    dpi: int = 150,
    width_in: float = 10.0,
    title: str | None = None,
    hidden_layers: tuple[tuple[int, int], ...] = HIDDEN_LAYERS,
) -> Path:
    """Render the polygons of ``component`` to a PNG with matplotlib; returns the path.

    One colour per GDS layer (``hidden_layers`` are skipped; default: via arrays); axes in µm;
    the title states the bounding box and its area. An N = 32 tensor core renders in seconds.
    """
    import klayout.db as kdb
    from matplotlib import colormaps
    from matplotlib.collections import PolyCollection

    polys: dict[tuple[int, int], list[np.ndarray]] = {}
    _collect(component, kdb.DCplxTrans(), polys, {})
    box = component.dbbox()
    aspect = max(box.height(), 1.0) / max(box.width(), 1.0)
    fig = new_figure(figsize=(width_in, max(2.0, min(width_in * aspect, 3 * width_in))))
    ax = fig.subplots()
    colours = colormaps["tab10"]
    shown = sorted(layer for layer in polys if layer not in set(hidden_layers))
    names = {(li.layer, li.datatype): li.name for li in component.kcl.layer_infos()}
    for i, layer in enumerate(shown):
        ax.add_collection(
            PolyCollection(
                polys[layer],
                facecolors=colours(i % 10),
                edgecolors=colours(i % 10),
                linewidths=0.4,  # keeps 0.5 µm waveguides visible on a mm-scale plot
                alpha=0.6,
                label=f"{names.get(layer, '')} {layer[0]}/{layer[1]}",
            )
        )
    ax.set_xlim(box.left, box.right)
    ax.set_ylim(box.bottom, box.top)
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    area = box.width() * box.height()
    ax.set_title(
        (title + "\n" if title else "")
        + f"{component.name[:60]}: {box.width():.0f} × {box.height():.0f} µm = {area:,.0f} µm²"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", title="GDS layer")
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path
