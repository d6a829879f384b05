"""Property-based bad input: every shipped config, mutated (keys dropped or added, values of
the wrong type, NaN / inf, negative, zero and huge numbers, unknown names, malformed YAML,
other encodings, binary bytes), through ``validate`` and ``run --dry-run``: the exit code is
0 or 2, the output holds no traceback, and a refused config leaves no file in ``--out``."""

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from photonic.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs").glob("*.yaml"))}
TEXTS = {name: (ROOT / "configs" / name).read_text() for name in SHIPPED}

BAD_VALUES = st.one_of(
    st.sampled_from([None, True, False, "", "xyz", "clement", "burger", "all", [], {}, [None],
                     [1, "a"], {"zz": 1}, float("nan"), float("inf"), float("-inf"), -1, 0, 1,
                     -0.5, 0.5, 10**9, 10**12, -(10**12), 1e300, "1e3", "tcp://x:1"]),
    st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
# a run is never started (--dry-run), so any size is safe to try
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _locations(node, path=()):
    """Every key of a mapping and index of a list in ``node``, as paths."""
    out = []
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append(path + (k,))
        out += _locations(v, path + (k,))
    return out


def _parent(cfg, path):
    node = cfg
    for k in path[:-1]:
        node = node[k]
    return node


@st.composite
def mutated_configs(draw):
    """A shipped config with 1–3 structural mutations, dumped as YAML."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    cfg = copy.deepcopy(SHIPPED[name])
    for _ in range(draw(st.integers(1, 3))):
        locs = _locations(cfg)
        if not locs:
            break
        path = draw(st.sampled_from(locs))
        parent, key = _parent(cfg, path), path[-1]
        op = draw(st.sampled_from(["drop", "add", "replace", "replace"]))
        if op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["zz_unknown", "tiles", "seeds", "kind"]))] = \
                draw(BAD_VALUES)
        else:
            parent[key] = draw(BAD_VALUES)
    return name, yaml.safe_dump(cfg, sort_keys=False).encode()


@st.composite
def mangled_files(draw):
    """A shipped config's text cut, spliced with YAML syntax, re-encoded, or binary."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    text = TEXTS[name]
    op = draw(st.sampled_from(["cut", "splice", "latin-1", "utf-16", "binary"]))
    at = draw(st.integers(0, len(text)))
    if op == "cut":
        return name, text[:at].encode()
    if op == "splice":
        junk = draw(st.sampled_from(["\t", ":", "[", "{", "}", "&a", "*a", "- ", "!!python/"
                                     "object:os.system", "\n  x: 1\n", "'", "? ", "%YAML 9\n",
                                     "\ufeff", "\x07"]))
        return name, (text[:at] + junk + text[at:]).encode()
    if op == "latin-1":
        return name, (text[:at] + "é" + text[at:]).encode("latin-1", errors="replace")
    if op == "utf-16":
        return name, text.encode("utf-16")
    return name, draw(st.binary(min_size=1, max_size=64))


def _check(tmp_path, data: bytes):
    cfg = tmp_path / "fuzzed.yaml"
    cfg.write_bytes(data)
    out = tmp_path / "out"
    runner = CliRunner()
    for args in (["validate", str(cfg)], ["run", str(cfg), "--out", str(out), "--dry-run"]):
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 2), (args, res.output, data[:400])
        assert "Traceback" not in res.output, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        if res.exit_code == 2:
            assert res.output.startswith("error: "), res.output
        assert not out.exists(), "a dry run or a refused config wrote into --out"


@SETTINGS
@given(case=mutated_configs())
def test_mutated_shipped_configs_exit_0_or_2(tmp_path_factory, case):
    _check(tmp_path_factory.mktemp("fuzz"), case[1])


@settings(SETTINGS, max_examples=80)
@given(case=mangled_files())
def test_malformed_reencoded_and_binary_files_exit_0_or_2(tmp_path_factory, case):
    _check(tmp_path_factory.mktemp("fuzz"), case[1])
