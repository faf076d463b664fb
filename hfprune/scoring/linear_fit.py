"""Training-free replacement of removed layers: a linear map fitted on calibration activations (ReplaceMe,
arXiv 2505.02819), folded into the FFN output projection of the last kept layer before each removed block.

For a removed block [a, b) and the layer k = a - 1 before it: Y is k's residual stream just before its FFN output M
is added (so k outputs Y + M) and L is the residual stream the *dense* model has after the block (layer b's input).
T minimises ||Y + M.T - L||^2 + ridge; the pruned model then computes Y + M.T where the block used to be, and since
M is linear in the down projection W (torch layout [hidden, intermediate]), giving k the projection T^T.W (and a
bias T^T.b) does exactly that: one matrix per block changes, the checkpoint stays a stock one.

A block that starts at layer 0 has no layer before it: there the map acts on the embedding output h0 (L ~ h0 +
h0.T), folded into an untied input embedding (E <- E + E.T). Blocks are fitted in depth order on the stream of
the model as pruned and replaced so far, so a later block also corrects what the earlier ones left.

The fit (fit_blocks) is written once, as observers of passes (see passes.py): either driver runs it, the model
loaded in memory or read from disk layer by layer, with the same sums over the same activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PlanError
from .passes import Observers, Projection

CITATION = ("ReplaceMe: Network Simplification via Layer Pruning and Linear Transformations (Shopkhoev et al., "
            "2025), arXiv:2505.02819")
# The FFN's output projection, by the name it has in the architectures hfprune knows.
FFN_OUTPUT_NAMES = ("down_proj", "fc2", "dense_4h_to_h", "c_proj", "w2")
# Norms applied to the FFN's output before the residual add: a linear map cannot be folded through them.
POST_FFN_NORMS = ("post_feedforward_layernorm", "post_mlp_layernorm")


@dataclass(frozen=True)
class Block:
    """Removed layers [first, end) and where their map folds: layer `target` (first - 1), or -1: the embedding."""

    first: int
    end: int

    @property
    def target(self) -> int:
        return self.first - 1

    def describe(self) -> str:
        return f"layers {self.first}-{self.end - 1}" if self.end - self.first > 1 else f"layer {self.first}"


def removed_blocks(plan) -> list[Block]:
    """Maximal runs of whole removed layers, in depth order."""
    blocks: list[Block] = []
    for i in sorted(plan.drop_layers):
        if blocks and blocks[-1].end == i:
            blocks[-1] = Block(blocks[-1].first, i + 1)
        else:
            blocks.append(Block(i, i + 1))
    return blocks


COSINE_TOKENS, COSINE_STEPS, COSINE_LR, COSINE_BATCH = 16384, 300, 1e-3, 2048


class LinearFit:
    """Sums over calibration tokens for the least-squares map M.T ~ R (R = L - Y), in float64: memory is
    hidden^2 whatever the number of tokens. With `keep_tokens`, the first that many tokens are also kept for the
    cosine objective, which has no closed form.

    weighting "token" (the default) weighs each token's squared error by 1/mean(L_t^2): the relative error each
    token's next pre-norm layer sees. Unweighted, a few attention-sink tokens own the fit: in Qwen2.5 the first
    token of a window carries ~99% of the residual stream's energy in the middle layers (norm ~5500 against ~40),
    so plain least squares fits that token and little else."""

    def __init__(self, keep_tokens: int = 0, weighting: str = "token"):
        self.weighting = weighting
        self.mm = self.mr = None  # M^T.M and M^T.R, hidden x hidden, from the first update
        self.rr = 0.0  # ||R||^2
        self.ll = 0.0  # ||L||^2
        self.tokens = 0
        self.keep_tokens = keep_tokens
        self.kept: list = []  # (m, y, target) float32 chunks, at most keep_tokens rows in all
        self.cosine: dict | None = None  # the cosine refinement's mean distances, when it ran

    def update(self, m, y, target) -> None:
        """Add tokens: m, y, target are [..., hidden] (any leading shape), masked tokens already removed."""
        import torch

        m = m.reshape(-1, m.shape[-1]).to(torch.float64).cpu()
        y = y.reshape(-1, y.shape[-1]).to(torch.float64).cpu()
        target = target.reshape(-1, target.shape[-1]).to(torch.float64).cpu()
        r = target - y
        if self.weighting == "token":
            w = 1.0 / (target.pow(2).mean(-1, keepdim=True) + 1e-12)
        else:
            w = torch.ones(target.shape[0], 1, dtype=torch.float64)
        if self.mm is None:
            self.mm = torch.zeros(m.shape[-1], m.shape[-1], dtype=torch.float64)
            self.mr = torch.zeros_like(self.mm)
        mw = m * w
        self.mm += mw.T @ m
        self.mr += mw.T @ r
        self.rr += float((w * r * r).sum())
        self.ll += float((w * target ** 2).sum())
        room = self.keep_tokens - sum(c[0].shape[0] for c in self.kept)
        if room > 0:
            self.kept.append(tuple(t[:room].float() for t in (m, y, target)))
        self.tokens += m.shape[0]

    def fit(self, ridge: float, objective: str = "lstsq"):
        """The map: least squares in closed form, then (objective cosine) refined by Adam to minimise the mean
        cosine distance between the replaced stream Y + M.T and the dense L, which is what the next pre-norm
        layer sees (ReplaceMe's cosine variant), on the kept tokens."""
        t = self.solve(ridge)
        return self.refine_cosine(t) if objective == "cosine" else t

    def refine_cosine(self, t):
        import torch

        m, y, target = (torch.cat([c[i] for c in self.kept]) for i in range(3))

        def distance(tt, rows=slice(None)):
            return (1 - torch.nn.functional.cosine_similarity(y[rows] + m[rows] @ tt, target[rows], dim=-1)).mean()

        g = torch.Generator().manual_seed(0)
        tt = t.float().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([tt], lr=COSINE_LR)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, COSINE_STEPS)
        with torch.no_grad():
            before = float(distance(tt))
        with torch.enable_grad():  # the drivers run under no_grad
            for _ in range(COSINE_STEPS):
                rows = torch.randint(0, m.shape[0], (min(COSINE_BATCH, m.shape[0]),), generator=g)
                optimizer.zero_grad()
                distance(tt, rows).backward()
                optimizer.step()
                schedule.step()
        with torch.no_grad():
            after = float(distance(tt))
        self.cosine = {"tokens": int(m.shape[0]), "steps": COSINE_STEPS, "distance_lstsq": round(before, 6),
                       "distance": round(after, 6)}
        return tt.detach().to(torch.float64)

    def solve(self, ridge: float):
        """T = (M^T.M + lambda.I)^-1 M^T.R with lambda = ridge x the mean diagonal of M^T.M."""
        import torch

        hidden = self.mm.shape[0]
        lam = ridge * float(torch.diagonal(self.mm).mean()) if self.tokens else 0.0
        a = self.mm + lam * torch.eye(hidden, dtype=torch.float64)
        try:
            return torch.linalg.solve(a, self.mr)
        except RuntimeError:  # singular even with the ridge (e.g. ridge 0 and too few tokens)
            return torch.linalg.lstsq(a, self.mr).solution

    def residual(self, t) -> float:
        """||R - M.T||^2 as a fraction of ||L||^2, both weighted as the fit is (token: the mean over tokens of the
        relative squared error), t=None: plain removal, T = I."""
        import torch

        if t is None:
            t = torch.eye(self.mm.shape[0], dtype=torch.float64)
        err = self.rr - 2.0 * float((t * self.mr).sum()) + float((t * (self.mm @ t)).sum())
        return max(err, 0.0) / self.ll if self.ll else 0.0


@dataclass
class FitReport:
    """What a replacement changed and how well it fits; written to hfprune.json and the card."""

    blocks: list[dict] = field(default_factory=list)
    not_replaced: list[str] = field(default_factory=list)
    tokens: int = 0
    maps: dict = field(default_factory=dict)  # Block -> T (float64), for the Python API; not serialised

    def to_dict(self) -> dict:
        return {"blocks": self.blocks, "not_replaced": self.not_replaced, "tokens": self.tokens}


def _ffn_output_name(ckpt, layer: int) -> str:
    """The on-disk name prefix of layer `layer`'s FFN output projection ('model.layers.3.mlp.down_proj')."""
    arch = ckpt.arch
    disk_mlp = next((d for d, m in arch.disk_aliases.items() if m == arch.mlp_module), arch.mlp_module)
    prefix = f"{ckpt.layer_prefix}{layer}.{disk_mlp}."
    names = {t.name for t in ckpt.tensors()}
    for candidate in FFN_OUTPUT_NAMES:
        if prefix + candidate + ".weight" in names:
            return prefix + candidate
    raise PlanError(f"layer {layer}'s FFN has no single output projection ({', '.join(FFN_OUTPUT_NAMES)}) in this "
                    "checkpoint (a mixture of experts?): a linear map cannot be folded into it; use --replace none")


def fold_targets(ckpt, plan) -> tuple[list[Block], dict[int, str], list[str]]:
    """(blocks to replace, target layer -> FFN output tensor prefix (-1: the input embedding), what is not
    replaced and why). Refuses where a fold would not be exact."""
    arch = ckpt.arch
    if arch.mlp_returns_tuple or any(n in arch.mlp for n in POST_FFN_NORMS):
        raise PlanError(f"--replace linear: a {ckpt.config.get('model_type')} layer norms its FFN output before the "
                        "residual add, so a linear map cannot be folded into the FFN; use --replace none")
    notes = []
    if plan.skip_attention or plan.skip_mlp:
        notes.append("attention/FFN sub-blocks removed alone are not replaced (only whole removed layers are)")
    blocks, targets = [], {}
    for block in removed_blocks(plan):
        if block.target < 0:
            if ckpt.decoder_config.get("tie_word_embeddings", ckpt.config.get("tie_word_embeddings")):
                notes.append(f"{block.describe()}: not replaced; the block starts at layer 0 and the input embedding "
                             "is tied to the head, so the map has nowhere exact to fold")
                continue
            targets[-1] = _embedding_prefix(ckpt)
        elif block.target in plan.skip_mlp:
            notes.append(f"{block.describe()}: not replaced; layer {block.target}'s FFN, where the map would fold, "
                         "is removed too")
            continue
        else:
            targets[block.target] = _ffn_output_name(ckpt, block.target)
        blocks.append(block)
    return blocks, targets, notes


# ---------------------------------------------------------------- the fit, on any driver

def _fold(weight, bias, t):
    """(T^T.W, T^T.b) in float32 for W [hidden, inner] and b [hidden] (torch layout)."""
    import torch

    t = t.to(torch.float64)
    w = (t.T @ weight.to(torch.float64)).to(torch.float32)
    b = None if bias is None else (t.T @ bias.to(torch.float64)).to(torch.float32)
    return w, b


def _fold_embedding(weight, t):
    """E + E.T: the embedding rows mapped by I + T."""
    import torch

    e = weight.to(torch.float64)
    return (e + e @ t.to(torch.float64)).to(torch.float32)


def _record(block: Block, fit: LinearFit, t, target_name: str) -> dict:
    record = {"layers": [block.first, block.end - 1], "fold_into": target_name,
              "removal_error": round(fit.residual(None), 6), "fit_error": round(fit.residual(t), 6)}
    if fit.cosine:
        record["cosine"] = fit.cosine
    return record


class _BlockObserver:
    """Feeds one block's fit from a pass: Y and M, the terms of the fold layer k's output (for k = -1 both are the
    embedding output), against L, the dense model's stream at the block's end: `targets` kept from the dense pass,
    or, when none are given, this same pass's stream there (the pass is the dense one and the stream up to k is the
    pruned model's too). Keeps batch 0's layer-k input and terms, for checking the fold."""

    def __init__(self, block: Block, fit: LinearFit, targets: dict | None = None):
        self.block, self.fit, self.targets = block, fit, targets
        self.pending: dict[int, tuple] = {}  # batch -> (Y, M) waiting for its L
        self.check_input = self.check_terms = None

    def on_split(self, i, bi, y, m):
        if i == self.block.target:
            self._terms(bi, y, m)

    def on_layer(self, i, bi, x, y):
        k = self.block.target
        if i == k and bi == 0:
            self.check_input = x
        if k < 0 and i == 0:
            self._terms(bi, x, x)
        if self.targets is None and i == self.block.end - 1:
            y_k, m_k = self.pending.pop(bi)
            self.fit.update(m_k, y_k, y)

    def _terms(self, bi, y, m):
        if bi == 0:
            self.check_terms = (y, m)
        if self.targets is None:
            self.pending[bi] = (y, m)
        else:
            self.fit.update(m, y, self.targets[bi])


class _StreamKeeper:
    """Keeps the stream at the given layer boundaries, batch by batch (on the CPU)."""

    def __init__(self, ends: set[int]):
        self.kept: dict[int, dict] = {end: {} for end in ends}

    def on_layer(self, i, bi, x, y):
        if i + 1 in self.kept:
            self.kept[i + 1][bi] = y.cpu()


def fit_blocks(driver, plan, blocks: list[Block], targets: dict[int, str], ridge: float, objective: str = "lstsq",
               weighting: str = "token") -> tuple[dict, FitReport]:
    """Fit every block's map in depth order and fold it into the driver's model, so each later block is fitted on
    the model as pruned and replaced so far. One dense pass (up to the last block's end) gives every block's target
    L, and for a block whose fold layer comes before any change also its Y and M; each other block runs the model
    as pruned and replaced so far up to its fold layer only. Returns ({tensor name: float32 value}, report)."""
    import torch

    attn = set(plan.drop_layers) | set(plan.skip_attention)
    mlp = set(plan.drop_layers) | set(plan.skip_mlp)
    first_change = min(attn | mlp)
    fits = {b: LinearFit(keep_tokens=COSINE_TOKENS if objective == "cosine" else 0, weighting=weighting)
            for b in blocks}
    early = {b: _BlockObserver(b, fits[b]) for b in blocks if b.target < first_change}
    keeper = _StreamKeeper({b.end for b in blocks if b not in early})
    driver.run(Observers([*early.values(), keeper]), split={b.target for b in early if b.target >= 0},
               upto=max(b.end for b in blocks) - 1, desc="dense stream")
    folds, report = {}, FitReport()
    for block in blocks:
        k = block.target
        observer = early.get(block)
        if observer is None:
            observer = _BlockObserver(block, fits[block], keeper.kept.pop(block.end))
            driver.run(observer, attn=attn, mlp=mlp, split={k}, upto=k, desc=f"fit {block.describe()}")
        t = observer.fit.fit(ridge, objective)
        report.maps[block] = t
        projection = Projection(k, targets[k])
        weight, bias = driver.read(projection)
        if k < 0:
            weight, bias = _fold_embedding(weight, t), None
        else:
            weight, bias = _fold(weight, bias, t)
        driver.write(projection, weight, bias)
        if k >= 0:
            with torch.no_grad():
                _check_fold(driver.layer_split(k, 0, observer.check_input, k in attn), observer.check_terms, t,
                            targets[k])
        folds[f"{targets[k]}.weight"] = weight
        if bias is not None:
            folds[f"{targets[k]}.bias"] = bias
        report.blocks.append(_record(block, observer.fit, t, f"{targets[k]}.weight" if k < 0 else targets[k]))
        report.tokens = observer.fit.tokens
    return folds, report


def _check_fold(after: tuple, before: tuple, t, name: str) -> None:
    """After folding, the fold layer must output Y + M.T on the same input; where the FFN output is not linear in
    its projection (an architecture hfprune has not seen), refuse rather than write a model that computes
    something else."""
    import torch

    def relative(got, want):
        return float((got.to(torch.float64) - want).norm() / want.norm().clamp_min(1e-12))

    (y1, m1), (y0, m0) = after, before
    err = relative(m1, m0.to(torch.float64) @ t.to(torch.float64))
    if err > 1e-3 or relative(y1, y0.to(torch.float64)) > 1e-4:
        raise PlanError(f"--replace linear: folding into {name} did not give the fitted output (relative error "
                        f"{err:.2g}); this architecture's FFN output is not linear in that projection")


# ---------------------------------------------------------------- entry point

def fit_replacement(source_path, ckpt, plan, settings, *, trust_remote_code: bool = False, progress: bool = False,
                    echo=print) -> tuple[dict[str, bytes], dict]:
    """Fit the maps for `plan` on `source_path` with `settings` (a PruneSection/ReplaceSettings): ({source tensor
    name: new bytes in the checkpoint's dtype}, the record for hfprune.json and the card)."""
    from pathlib import Path

    from ..settings import WIKITEXT2
    from .calibration import load_texts
    from .drivers import open_driver

    blocks, targets, notes = fold_targets(ckpt, plan)
    data = settings.replace_data or getattr(settings, "data", None)
    objective = getattr(settings, "replace_objective", "lstsq")
    weighting = getattr(settings, "replace_weighting", "token")
    record = {"method": "linear", "objective": {"lstsq": "least squares", "cosine": "cosine"}[objective],
              "ridge": settings.replace_ridge, "weighting": weighting,
              "not_replaced": notes, "blocks": []}
    if not blocks:
        record["warning"] = "nothing was replaced: " + ("; ".join(notes) or "the plan removes no whole layer")
        return {}, record
    if data is None:
        raise PlanError("--replace linear needs calibration text: give --replace-data FILE (.txt/.json/.jsonl) or a "
                        f"Hub dataset id such as {WIKITEXT2} (or --data)")
    texts = load_texts(data)  # bad data fails before the model is loaded
    driver, calib, streamed = open_driver(
        Path(source_path), ckpt, _score_options(settings, trust_remote_code), data, texts,
        samples=settings.replace_samples, seq_len=settings.replace_seq_len, seed=getattr(settings, "seed", 0),
        needs_logits=False, progress=progress)
    folds, report = fit_blocks(driver, plan, blocks, targets, settings.replace_ridge, objective, weighting)
    record.update(report.to_dict())
    record["not_replaced"] = notes
    record["data"] = calib.describe()
    record["layer_by_layer"] = streamed
    for b in record["blocks"]:
        echo(f"  replaced {Block(b['layers'][0], b['layers'][1] + 1).describe()} by a linear map folded into "
             f"{b['fold_into']}: calibration error {b['removal_error']:.4f} -> {b['fit_error']:.4f} of the stream's "
             "energy")
    return {name: _to_disk_bytes(value, ckpt, name) for name, value in folds.items()}, record


def _score_options(settings, trust_remote_code: bool):
    """How the fit loads the model: float32, batches of 8 windows, streamed as --replace-stream says (named as a
    streamable layer metric, since the driver's choice reads the metric; the fit streams whatever the plan)."""
    from ..settings import ScoreOptions

    return ScoreOptions(metric="block-influence", remove=1, dtype="float32", batch_size=8,
                        trust_remote_code=trust_remote_code, stream=getattr(settings, "replace_stream", "auto"))


def _embedding_prefix(ckpt) -> str:
    names = [t.name for t in ckpt.tensors()]
    found = [n for n in names if n.endswith("embed_tokens.weight") or n.endswith("embed_in.weight")]
    if len(found) != 1:
        raise PlanError("--replace linear: cannot tell which tensor is the input embedding for a block that starts "
                        "at layer 0")
    return found[0].removesuffix(".weight")


def _to_disk_bytes(value, ckpt, name: str) -> bytes:
    import torch

    from .streamed_model import _TORCH_DTYPES

    info = next(t for t in ckpt.tensors() if t.name == name)
    t = value.to(getattr(torch, _TORCH_DTYPES[info.dtype])).contiguous()
    if tuple(t.shape) != tuple(info.shape):
        raise PlanError(f"--replace linear: the folded {name} has shape {tuple(t.shape)}, the checkpoint's "
                        f"{tuple(info.shape)}")
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()
