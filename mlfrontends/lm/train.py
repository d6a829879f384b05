"""First-order pre-training of the base models and their on-disk cache.

Roles (TOFU's setting):
- ``target``: trained on every author and the general-knowledge set;
- ``retain``: trained on ``retain90`` (all authors outside ``forget10``, hence outside every
  forget split) and the general-knowledge set — the reference for forget quality;
- ``partial``: a snapshot of the target run after ``partial_epochs`` epochs, so errors remain
  (used by the decoding workload).

Training minimises the mean token NLL of the answers (``<sep>`` … ``<eos>``, TOFU fine-tunes on
answers only), plus the Switch load-balancing loss for the MoE variant. AdamW, linear warm-up
then cosine decay to 10 % (the nanoGPT schedule).

Artefacts live under ``cache_dir / <dataset hash[:16]> / <role>-<arch>-seed<seed>-<key>.pt``,
where ``key`` hashes the dataset hash, the model and training configs and the role; each file
holds the state dict, both configs, the dataset hash and the training log, and is written
atomically (temp file, then rename). The cache dir is ``$PHOTONIC_SIM_CACHE/lm`` or
``~/.cache/photonic-sim/lm`` unless given.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlfrontends.lm.data import Benchmark, BenchmarkConfig, QAItem, build_benchmark
from mlfrontends.lm.model import CausalLM, LMConfig
from mlfrontends.lm.tokenizer import WordTokenizer, pack

Role = Literal["target", "retain", "partial"]
Arch = Literal["dense", "moe"]
ROLES: tuple[str, ...] = ("target", "retain", "partial")
ARCHS: dict[str, dict[str, int]] = {"dense": {"n_experts": 0}, "moe": {"n_experts": 4}}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(30, ge=1)
    partial_epochs: int = Field(6, ge=1, description="epochs of the 'partial' snapshot")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_frac: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    aux_loss_coef: float = Field(0.01, ge=0, description="Switch load-balancing weight (MoE)")

    @model_validator(mode="after")
    def _partial_before_end(self) -> TrainConfig:
        if self.partial_epochs >= self.epochs:
            raise ValueError(f"partial_epochs={self.partial_epochs} must be < "
                             f"epochs={self.epochs}")
        return self


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr_frac · lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def encode_items(tok: WordTokenizer, items: list[QAItem]) -> list[tuple[list[int], list[int]]]:
    return [(tok.prompt_ids(it.question), tok.answer_ids(it.answer)) for it in items]


def train_model(model: CausalLM, tok: WordTokenizer, items: list[QAItem], cfg: TrainConfig, *,
                seed: int, snapshot_epochs: tuple[int, ...] = ()
                ) -> tuple[list[dict[str, float]], dict[int, dict[str, torch.Tensor]]]:
    """Train in place; returns (per-epoch log, {epoch: state_dict copy} for snapshot_epochs)."""
    data = encode_items(tok, items)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    log: list[dict[str, float]] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    step = 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = rng.sample(range(len(data)), len(data))
        loss_sum = 0.0
        for s in range(0, len(order), cfg.batch_size):
            batch = [data[i] for i in order[s:s + cfg.batch_size]]
            x, y, m = pack([b[0] for b in batch], [b[1] for b in batch], pad_id=tok.pad_id)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            out = model(x)
            nll = F.cross_entropy(out.logits[m], y[m])
            loss = nll + (cfg.aux_loss_coef * out.aux_loss if out.aux_loss is not None else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += nll.item() * len(batch)
            step += 1
        log.append({"epoch": epoch, "answer_nll": loss_sum / len(data)})
        if epoch in snapshot_epochs:
            snapshots[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.eval()
    return log, snapshots


def default_cache_dir() -> Path:
    root = os.environ.get("PHOTONIC_SIM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "photonic-sim") / "lm"


def _key(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class LMArtefacts:
    """What ``load_models`` returns: the benchmark, its tokenizer, and the models by role
    (eval mode), with each model's saved record (configs, dataset hash, training log, path)."""

    bench: Benchmark
    tok: WordTokenizer
    models: dict[str, CausalLM]
    records: dict[str, dict]

    @property
    def dataset_hash(self) -> str:
        return self.bench.hash


def training_items(bench: Benchmark, role: str) -> list[QAItem]:
    if role in ("target", "partial"):
        return bench.split("authors") + bench.split("general")
    if role == "retain":
        return bench.split("retain90") + bench.split("general")
    raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")


def load_models(bench_cfg: BenchmarkConfig | None = None, *, arch: Arch = "dense",
                roles: tuple[str, ...] = ROLES, seed: int = 0,
                train_cfg: TrainConfig | None = None, lm_overrides: dict | None = None,
                cache_dir: Path | str | None = None, log=None) -> LMArtefacts:
    """Load the models for ``roles`` from the cache, training (and caching) what is missing.

    ``arch`` 'dense' or 'moe' (top-1 of 4 experts); ``seed`` sets initialisation and data order;
    ``lm_overrides`` change ``LMConfig`` fields (e.g. a smaller model for tests); ``log`` is an
    optional ``print``-like callable for progress."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    for r in roles:
        if r not in ROLES:
            raise ValueError(f"unknown role {r!r}; valid roles: {', '.join(ROLES)}")
    bench = build_benchmark(bench_cfg or BenchmarkConfig())
    tok = WordTokenizer.from_texts(bench.texts())
    train_cfg = train_cfg or TrainConfig()
    lm_cfg = LMConfig(vocab_size=len(tok), **{**ARCHS[arch], **(lm_overrides or {})})
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / bench.hash[:16]

    def path_of(role: str) -> Path:
        key = _key(bench.hash, lm_cfg.model_dump(), train_cfg.model_dump(), role, seed)
        return folder / f"{role}-{arch}-seed{seed}-{key}.pt"

    models: dict[str, CausalLM] = {}
    records: dict[str, dict] = {}
    for role in roles:
        path = path_of(role)
        if not path.exists():
            run_role = "target" if role == "partial" else role
            if log:
                log(f"training {run_role} ({arch}, seed {seed}) -> {folder}")
            torch.manual_seed(seed)
            model = CausalLM(lm_cfg)
            snaps = (train_cfg.partial_epochs,) if run_role == "target" else ()
            hist, snapshots = train_model(model, tok, training_items(bench, run_role),
                                          train_cfg, seed=seed, snapshot_epochs=snaps)
            states = {run_role: model.state_dict()}
            if run_role == "target":
                states["partial"] = snapshots[train_cfg.partial_epochs]
            for r, state in states.items():
                n_ep = train_cfg.partial_epochs if r == "partial" else train_cfg.epochs
                _atomic_save({"state_dict": state, "lm_config": lm_cfg.model_dump(),
                              "train_config": train_cfg.model_dump(),
                              "bench_config": bench.cfg.model_dump(),
                              "dataset_hash": bench.hash, "role": r, "arch": arch,
                              "seed": seed, "log": hist[:n_ep]}, path_of(r))
        rec = torch.load(path, map_location="cpu", weights_only=False)
        if rec["dataset_hash"] != bench.hash:
            raise ValueError(f"cached model {path} was trained on dataset "
                             f"{rec['dataset_hash'][:16]}, expected {bench.hash[:16]}")
        model = CausalLM(LMConfig(**rec["lm_config"]))
        model.load_state_dict(rec["state_dict"])
        model.eval()
        models[role] = model
        records[role] = {k: v for k, v in rec.items() if k != "state_dict"} | {"path": str(path)}
    return LMArtefacts(bench, tok, models, records)
