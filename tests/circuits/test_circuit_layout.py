"""gdsfactory layouts: snapshot numbers computed from the cell geometry, area cross-check, I/O."""

from __future__ import annotations

import gdsfactory as gf
import matplotlib.image
import numpy as np
import pytest

from circuits import (
    COMPONENTS,
    build,
    cell_geometry_um,
    compare_mesh_areas,
    footprint_um2,
    layout_area_um2,
    render_png,
    settings_from_device,
    write_gds,
)
from circuits.layout import LEAD_LENGTH_UM, MODE_PITCH_UM, SBEND_LENGTH_UM, activate_pdk
from photonic import DeviceParams, mesh_layout
from photonic.devices import LayoutParams, PhaseShifterParams

activate_pdk()
HEATER_UM = 61.6  # Harris et al., Opt. Express 22, 10487 (2014): doped-Si heater length
P = MODE_PITCH_UM


def _box(c):
    b = c.dbbox()
    return b.left, b.bottom, b.right, b.top


def _core(heater_length_um=HEATER_UM):
    return gf.components.mzi2x2_2x2_phase_shifter(length_x=heater_length_um, delta_length=0)


def _expected_mzi_box(heater_length_um=HEATER_UM, pitch=P):
    """MZI cell box from its parts: leads + external heater, S-bends, PDK MZI, S-bends."""
    core = _core(heater_length_um)
    span = core.ports["o3"].dcenter[0] - core.ports["o2"].dcenter[0]
    width = 2 * LEAD_LENGTH_UM + heater_length_um + 2 * SBEND_LENGTH_UM + span
    heater = gf.components.straight_heater_metal(length=heater_length_um)
    top = max(heater.dbbox().top, -pitch / 2 + core.dbbox().top)
    bottom = min(-pitch - 0.25, -pitch / 2 + core.dbbox().bottom)
    return 0.0, bottom, width, top


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_every_registered_component_builds_with_ports_and_positive_area(name):
    settings = {"n": 4} if name in {"mesh", "tensor_core", "sigma_column"} else {}
    c = build(name, **settings)
    names = {p.name for p in c.ports if p.port_type != "electrical"}
    n = settings.get("n", 2 if name == "mzi" else 1)
    assert {f"in{m}" for m in range(n)} | {f"out{m}" for m in range(n)} <= names
    assert footprint_um2(c) > 0


@pytest.mark.parametrize("heater_length_um", [HEATER_UM, 100.0])
def test_mzi_cell_box_and_ports_follow_its_parts(heater_length_um):
    c = build("mzi", heater_length_um=heater_length_um)
    assert _box(c) == pytest.approx(_expected_mzi_box(heater_length_um), abs=1e-3)
    left, _, right, _ = _expected_mzi_box(heater_length_um)
    ports = {p.name: p.dcenter for p in c.ports}
    assert ports["in0"] == pytest.approx((0.0, 0.0))
    assert ports["in1"] == pytest.approx((0.0, -P))
    assert ports["out0"] == pytest.approx((right - left, 0.0))
    assert ports["out1"] == pytest.approx((right - left, -P))


def test_heater_length_from_the_preset_sets_the_cell_length():
    """Two heaters per cell (θ and φ): 1 µm more heater gives a 2 µm longer cell."""
    short = cell_geometry_um(heater_length_um=HEATER_UM)["column_pitch_um"]
    long = cell_geometry_um(heater_length_um=HEATER_UM + 40.0)["column_pitch_um"]
    assert long - short == pytest.approx(80.0, abs=1e-3)
    device = DeviceParams(
        shifter=PhaseShifterParams(length_um=HEATER_UM, v_pi_v=1.0, v_max_v=2.0),
        layout=LayoutParams(mode_pitch_um=40.0),
    )
    settings = settings_from_device(device)
    assert settings == {"heater_length_um": HEATER_UM, "mode_pitch_um": 40.0,
                        "sbend_length_um": 40.0, "lead_length_um": 16.0}
    assert build("mzi", **settings).dxsize == pytest.approx(short, abs=1e-3)
    # the preset's S-bend and lead lengths reach the drawn cell: 2 S-bends, 2 leads
    longer = build("mzi", **{**settings, "sbend_length_um": 50.0, "lead_length_um": 20.0})
    assert longer.dxsize - short == pytest.approx(2 * 10.0 + 2 * 4.0, abs=1e-3)


@pytest.mark.parametrize("topology", ["clements", "reck"])
@pytest.mark.parametrize("n", [4, 5, 8])
def test_mesh_snapshot_numbers(topology, n):
    lay = mesh_layout(n, topology)
    cell = build("mzi", heater_length_um=HEATER_UM)
    c = build("mesh", n=n, topology=topology, heater_length_um=HEATER_UM)
    _, cb, cw, ct = _box(cell)
    assert _box(c) == pytest.approx((0.0, -(n - 2) * P + cb, lay.depth * cw, ct), abs=1e-3)
    refs = [inst.cell.name for inst in c.insts]
    assert refs.count(cell.name) == lay.num_mzis
    assert len(refs) == lay.num_mzis + (lay.depth * n - 2 * lay.num_mzis)  # + idle straights
    assert c.info["num_mzis"] == lay.num_mzis and c.info["depth"] == lay.depth
    for m in range(n):
        assert c.ports[f"out{m}"].dcenter == pytest.approx((lay.depth * cw, -m * P))


def test_tensor_core_snapshot_numbers():
    n = 6
    mesh = build("mesh", n=n, heater_length_um=HEATER_UM)
    sigma = build("sigma_column", n=n, heater_length_um=HEATER_UM)
    io = gf.components.edge_coupler_silicon().dxsize
    c = build("tensor_core", n=n, heater_length_um=HEATER_UM)
    assert c.dxsize == pytest.approx(2 * io + 2 * mesh.dxsize + sigma.dxsize, abs=1e-3)
    assert c.dbbox().top == pytest.approx(max(mesh.dbbox().top, sigma.dbbox().top), abs=1e-3)
    assert c.dbbox().bottom == pytest.approx(
        min(mesh.dbbox().bottom, sigma.dbbox().bottom), abs=1e-3
    )
    assert c.info["num_mzis"] == n * (n - 1) + n
    assert c.info["num_heaters"] == 2 * n * (n - 1) + n
    assert len(c.insts) == 3 + 2 * n  # V mesh, Σ, U mesh, 2N edge couplers


@pytest.mark.parametrize("topology", ["clements", "reck"])
def test_analytic_area_from_the_device_against_the_independent_layout(topology):
    """Analytic: depth × (2 L_shifter + 2 L_coupler + 2 L_sbend + 2 L_arm + 2 L_lead) ×
    (N − 1) pitches from DeviceParams alone; layout: the drawn mesh, whose MMIs (25.5 µm) are
    shorter than the 31 µm coupler and whose box overhangs the outer waveguides by a few µm.
    Both are exact here, so the gap is pinned to the µm."""
    device = DeviceParams()
    cell_a = device.mzi_cell_length_um
    assert cell_a == pytest.approx(2 * (100 + 31 + 40 + 20 + 16))
    geo = cell_geometry_um(**settings_from_device(device))
    for row in compare_mesh_areas(device, ns=(4, 8, 16), topologies=(topology,)):
        n, lay = row["n"], mesh_layout(row["n"], topology)
        assert row["analytic_area_um2"] == pytest.approx(lay.depth * cell_a * (n - 1) * 50.0)
        box = build("mesh", n=n, topology=topology, **settings_from_device(device)).dbbox()
        assert box.width() == pytest.approx(lay.depth * geo["column_pitch_um"], abs=1e-3)
        assert row["layout_area_um2"] == pytest.approx(box.width() * box.height(), rel=1e-12)
        assert abs(row["gap"]) < 0.05


def test_layout_area_is_the_bounding_box():
    geometry = cell_geometry_um()
    assert geometry["mzi_height_um"] == 2 * P
    assert geometry["bbox_height_um"] == pytest.approx(build("mzi").dysize)
    assert layout_area_um2("mesh", n=8) == pytest.approx(footprint_um2(build("mesh", n=8)))


def test_n32_tensor_core_builds_and_round_trips_through_gds(tmp_path):
    c = build("tensor_core", n=32, topology="clements")
    path = write_gds(c, tmp_path / "core32.gds")
    back = gf.import_gds(path)
    assert _box(back) == pytest.approx(_box(c), abs=1e-3)
    assert c.info["num_mzis"] == 32 * 31 + 32


def test_render_png_writes_an_image(tmp_path):
    c = build("tensor_core", n=4)
    path = render_png(c, tmp_path / "core.png", dpi=60, width_in=8.0)
    img = matplotlib.image.imread(path)
    assert img.shape[1] >= 8 * 60 * 0.8 and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.01  # not a blank canvas


def _boxes(polygons) -> np.ndarray:
    """Sorted per-polygon boxes (xmin, ymin, xmax, ymax): placement and mirroring show here
    (vertex lists may differ by collinear points klayout drops when flattening)."""
    b = np.array([np.concatenate([p.min(axis=0), p.max(axis=0)]) for p in polygons])
    return b[np.lexsort(b.T[::-1])]


def test_render_walks_the_hierarchy_without_losing_or_misplacing_polygons():
    """The renderer moves each cell definition's polygons per reference (mirrors included);
    it must give the same polygons as klayout's own flattening."""
    import klayout.db as kdb

    from circuits.layout import _collect

    cell = build("mzi")  # asymmetric in y (heater pads on top): mirrors show in the boxes
    c = gf.Component()
    for i in range(40):  # more references than are flattened at once: walked
        ref = c << cell
        if i % 3 == 1:
            ref.dmirror_y()
        if i % 3 == 2:
            ref.drotate(90)
        ref.dmove((500.0 * i, 7.0 * i))
    polys: dict = {}
    _collect(c, kdb.DCplxTrans(), polys, {})
    flat = c.get_polygons_points(by="tuple")
    assert set(polys) == {k for k, v in flat.items() if v}
    for layer, pts in polys.items():
        assert len(pts) == len(flat[layer])
        np.testing.assert_allclose(_boxes(pts), _boxes(flat[layer]), atol=1e-6)


def test_errors_name_valid_choices():
    with pytest.raises(ValueError, match=r"valid choices: \[.*'mesh'.*\]; did you mean 'mesh'\?"):
        build("meshh", n=4)
    with pytest.raises(ValueError, match="did you mean 'clements'"):
        build("mesh", n=4, topology="clement")
    with pytest.raises(ValueError, match=r"mode_pitch_um=20 is too small.*mode_pitch_um ≥ 25.5"):
        build("mzi", mode_pitch_um=20)
