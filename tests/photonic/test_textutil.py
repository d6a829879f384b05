import pytest

from photonic.textutil import did_you_mean, markdown_table


def test_did_you_mean_closest_and_prefix_and_nothing():
    assert did_you_mean("clemnts", ["reck", "clements"]) == "; did you mean 'clements'?"
    hint = did_you_mean("sg_x", ["sg_stein_estimator", "fd"])
    assert hint == "; did you mean 'sg_stein_estimator'?"
    assert did_you_mean("zzz", ["reck", "clements"]) == ""


def test_markdown_table_formats_and_escapes():
    lines = markdown_table(["a", "b"], [[1.23456789, "x|y"], [2, "z"]])
    assert lines == ["| a | b |", "|---|---|", "| 1.23457 | x\\|y |", "| 2 | z |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        markdown_table(["a", "b"], [[1]])


def test_new_figure_saves_png_without_pyplot(tmp_path):
    from photonic.runio import RunContext, new_figure

    fig = new_figure(figsize=(2, 2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    p = RunContext(out=tmp_path).savefig(fig, "x.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
