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

The maths (LinearFit) is shared by two drivers: in memory (fit_in_memory, on a loaded LayerStack) and layer by
layer from disk (fit_streamed, on a StreamedModel): the same sums over the same activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PlanError

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

    def __init__(self, hidden: int, keep_tokens: int = 0, weighting: str = "token"):
        import torch

        self.weighting = weighting
        self.mm = torch.zeros(hidden, hidden, dtype=torch.float64)
        self.mr = torch.zeros(hidden, hidden, dtype=torch.float64)
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
            targets[-1] = "embedding"
        elif block.target in plan.skip_mlp:
            notes.append(f"{block.describe()}: not replaced; layer {block.target}'s FFN, where the map would fold, "
                         "is removed too")
            continue
        else:
            targets[block.target] = _ffn_output_name(ckpt, block.target)
        blocks.append(block)
    return blocks, targets, notes


# ---------------------------------------------------------------- the two drivers

def _submodule(layer, arch, tensor_prefix: str):
    """The in-memory Linear of a layer for an on-disk name like 'model.layers.3.mlp.down_proj'."""
    child = tensor_prefix.rsplit(".", 1)[-1]
    return getattr(getattr(layer, arch.mlp_module), child)


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


def _new_fit(hidden: int, objective: str, weighting: str = "token") -> LinearFit:
    return LinearFit(hidden, keep_tokens=COSINE_TOKENS if objective == "cosine" else 0, weighting=weighting)


def _record(block: Block, fit: LinearFit, t, target_name: str) -> dict:
    record = {"layers": [block.first, block.end - 1], "fold_into": target_name,
              "removal_error": round(fit.residual(None), 6), "fit_error": round(fit.residual(t), 6)}
    if fit.cosine:
        record["cosine"] = fit.cosine
    return record


def _parallel_hooks(layer, arch, store: dict):
    """Capture the FFN output of a parallel layer (attention and FFN read the same input and are summed)."""
    mlp = getattr(layer, arch.mlp_module)
    return mlp.register_forward_hook(lambda m, a, out: store.__setitem__("m", out[0] if isinstance(out, tuple) else out))


def fit_in_memory(stack, batches: list, plan, blocks: list[Block], targets: dict[int, str], ridge: float,
                  embedding_name: str | None, bar=lambda it, **k: it, objective: str = "lstsq",
                  weighting: str = "token") -> tuple[dict, FitReport]:
    """Fit and fold every block on a model loaded in memory. One dense forward per batch gives every block's
    target L (and, for the first block, whose layers before it are untouched, its Y and M too); each later block
    runs the model as pruned and replaced so far up to its fold layer only. The model's weights are folded in
    place, block by block. Returns ({tensor: float32 value}, report)."""
    import torch

    bypass = {"drop": set(plan.drop_layers), "skip_attention": set(plan.skip_attention),
              "skip_mlp": set(plan.skip_mlp)}
    first_change = min(set(plan.drop_layers) | set(plan.skip_attention) | set(plan.skip_mlp))
    fits: dict[Block, LinearFit] = {}
    targets_l: list[dict] = []  # per batch: {block end: the dense stream there}, for blocks fitted later
    folds, report = {}, FitReport()
    with torch.no_grad():
        for ids in bar(batches, desc="dense stream"):
            _, states, mids = stack.capture(ids, mid=True)
            ends = {}
            for block in blocks:
                sequential = block.target < 0 or (stack.arch.mlp_entry and not stack.arch.parallel)
                if block.target < first_change and sequential:  # the stream up to the fold layer is the dense one
                    y, m = _split(stack, block.target, states, mids)
                    fits.setdefault(block, _new_fit(y.shape[-1], objective, weighting)).update(m, y, states[block.end])
                else:
                    ends[block.end] = states[block.end].cpu()
            targets_l.append(ends)
            del states, mids
        for block in blocks:
            k = block.target
            fit = fits.get(block)
            if fit is None:
                for ids, ends in zip(bar(batches, desc=f"fit {block.describe()}"), targets_l):
                    y, m = _activations_up_to(stack, ids, k, bypass)
                    fit = fit or _new_fit(m.shape[-1], objective, weighting)
                    fit.update(m, y, ends[block.end])
            t = fit.fit(ridge, objective)
            report.maps[block] = t
            if k < 0:
                emb = stack.model.get_input_embeddings()
                new = _fold_embedding(emb.weight.data, t)
                emb.weight.data.copy_(new.to(emb.weight.dtype))
                folds[embedding_name] = new
                report.blocks.append(_record(block, fit, t, embedding_name))
            else:
                linear = _submodule(stack.layers[k], stack.arch, targets[k])
                w, b = _fold(linear.weight.data, None if linear.bias is None else linear.bias.data, t)
                y0, m0 = _activations_up_to(stack, batches[0], k, bypass)
                linear.weight.data.copy_(w.to(linear.weight.dtype))
                folds[targets[k] + ".weight"] = w
                if b is not None:
                    linear.bias.data.copy_(b.to(linear.bias.dtype))
                    folds[targets[k] + ".bias"] = b
                _check_linear(stack, batches[0], k, bypass, y0, m0, t, targets[k])
                report.blocks.append(_record(block, fit, t, targets[k]))
            report.tokens = fit.tokens
    return folds, report


def _split(stack, k: int, states: list, mids: list):
    """(Y, M) of layer k from a capture: Y the residual before its FFN output M is added."""
    if k < 0:
        return states[0], states[0]
    if mids[k] is None:  # parallel attention and FFN: no stream between them
        raise PlanError("--replace linear needs the FFN output of parallel layers; use the layer-by-layer fit")
    return mids[k], states[k + 1] - mids[k]


class _Stop(Exception):
    pass


def _activations_up_to(stack, ids, k: int, bypass: dict):
    """(Y, M) of layer k on the model as pruned, running the model only up to layer k (k = -1: the embedding
    output, as both)."""
    arch = stack.arch
    store: dict = {}
    handles = []
    layers = stack.layers

    def stop(module, args, kwargs, out=None):
        raise _Stop

    if k < 0:
        handles.append(layers[0].register_forward_pre_hook(
            lambda m, a, kw: (store.__setitem__("x", a[0] if a else kw["hidden_states"]), stop(m, a, kw)),
            with_kwargs=True))
    else:
        if arch.parallel or not arch.mlp_entry:
            handles.append(_parallel_hooks(layers[k], arch, store))
        else:
            handles.append(getattr(layers[k], arch.mlp_entry).register_forward_pre_hook(
                lambda m, a, kw: store.__setitem__("y", a[0] if a else kw["hidden_states"]), with_kwargs=True))
        handles.append(layers[k].register_forward_hook(
            lambda m, a, kw, out: (store.__setitem__("out", out[0] if isinstance(out, tuple) else out),
                                   stop(m, a, kw)), with_kwargs=True))
    try:
        with stack.bypassed(**bypass):
            stack.model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if k < 0:
        return store["x"], store["x"]
    if "m" in store:
        return store["out"] - store["m"], store["m"]
    return store["y"], store["out"] - store["y"]


def _check_linear(stack, ids, k, bypass, y0, m0, t, name) -> None:
    """After folding: layer k must now output Y + M.T; where the FFN output is not linear in its projection
    (an architecture hfprune has not seen), refuse rather than write a model that computes something else."""
    import torch

    y1, m1 = _activations_up_to(stack, ids, k, bypass)
    want = m0.to(torch.float64) @ t.to(torch.float64)
    err = float((m1.to(torch.float64) - want).norm() / want.norm().clamp_min(1e-12))
    if err > 1e-3 or not torch.allclose(y0, y1):
        raise PlanError(f"--replace linear: folding into {name} did not give the fitted output (relative error "
                        f"{err:.2g}); this architecture's FFN output is not linear in that projection")


def fit_streamed(sm, batches: list, plan, blocks: list[Block], targets: dict[int, str], ridge: float,
                 embedding_name: str | None, bar=lambda it, **k: it, objective: str = "lstsq",
                 weighting: str = "token") -> tuple[dict, FitReport]:
    """The same fit with the model on disk: one pass over the layers carrying the dense stream and the pruned
    (and replaced so far) stream; layer k's Y and M are kept until the dense stream reaches the block's end."""
    import torch

    drop, attn, mlp = set(plan.drop_layers), set(plan.skip_attention), set(plan.skip_mlp)
    ends = {b.end: b for b in blocks}
    main = [b.embedded for b in batches]
    dense = list(main)
    pending: dict[int, list] = {}  # block end -> [(Y, M)] per batch
    folds, report = {}, FitReport()
    if -1 in targets:
        pending[blocks[0].end] = [(h, h) for h in main]

    def close(block: Block) -> None:
        fit = _new_fit(main[0].shape[-1], objective, weighting)
        for (y, m), target in zip(pending[block.end], dense):
            fit.update(m, y, target)
        t = fit.fit(ridge, objective)
        k = block.target
        for bi, (y, m) in enumerate(pending.pop(block.end)):
            main[bi] = (y.to(torch.float64) + m.to(torch.float64) @ t).to(y.dtype)
        if k < 0:
            folds[embedding_name] = _fold_embedding(sm._read(embedding_name).float(), t)
            report.blocks.append(_record(block, fit, t, embedding_name))
        else:
            name = targets[k]
            bias = sm._read(name + ".bias").float() if name + ".bias" in sm._files else None
            w, b = _fold(sm._read(name + ".weight").float(), bias, t)
            folds[name + ".weight"] = w
            if b is not None:
                folds[name + ".bias"] = b
            report.blocks.append(_record(block, fit, t, name))
        report.tokens = fit.tokens

    with torch.no_grad():
        for i in bar(range(len(sm.layers)), desc="replace (layer by layer)"):
            with sm.layer(i) as layer:
                for bi, batch in enumerate(batches):
                    dense[bi] = sm.run(layer, i, batch, dense[bi])
                    if i in drop:
                        continue
                    if i in targets:
                        y, m, out = _run_capturing(sm, layer, i, batch, main[bi], i in attn)
                        pending.setdefault(_block_after(blocks, i).end, []).append((y, m))
                        main[bi] = out
                    else:
                        main[bi] = sm.run(layer, i, batch, main[bi], i in attn, i in mlp)
            if i + 1 in ends and i + 1 in pending:
                close(ends[i + 1])
    return folds, report


def _block_after(blocks: list[Block], target: int) -> Block:
    return next(b for b in blocks if b.target == target)


def _run_capturing(sm, layer, i: int, batch, hidden, skip_attention: bool):
    """Layer i on `hidden`, returning (Y, M, output)."""
    arch = sm.arch
    store = {}
    if arch.parallel or not arch.mlp_entry:
        handle = _parallel_hooks(layer, arch, store)
    else:
        entry = getattr(layer, arch.mlp_entry)
        handle = entry.register_forward_pre_hook(
            lambda m, a, k: store.__setitem__("y", a[0] if a else k["hidden_states"]), with_kwargs=True)
    try:
        out = sm.run(layer, i, batch, hidden, skip_attention, False)
    finally:
        handle.remove()
    if "m" in store:
        return out - store["m"], store["m"], out
    return store["y"], out - store["y"], out


# ---------------------------------------------------------------- entry point

def fit_replacement(source_path, ckpt, plan, settings, *, trust_remote_code: bool = False, progress: bool = False,
                    echo=print) -> tuple[dict[str, bytes], dict]:
    """Fit the maps for `plan` on `source_path` with `settings` (a PruneSection/ReplaceSettings): ({source tensor
    name: new bytes in the checkpoint's dtype}, the record for hfprune.json and the card)."""
    from pathlib import Path

    from .calibration import WIKITEXT2, load_calibration, load_texts

    blocks, targets, notes = fold_targets(ckpt, plan)
    data = settings.replace_data or getattr(settings, "data", None)
    seed = getattr(settings, "seed", 0)
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
    options = _score_options(settings, trust_remote_code)
    from .score import _load_model, _load_tokenizer, _should_stream

    streamed = _should_stream(options, ckpt, progress)
    bar = _bar(progress)
    embedding_name = _embedding_name(ckpt) if -1 in targets else None
    if streamed:
        from .streamed_model import StreamedModel
        from .score import _stream_device

        tokenizer = _load_tokenizer(Path(source_path), options)
        calib = load_calibration(data, tokenizer, samples=settings.replace_samples, seq_len=settings.replace_seq_len,
                                 seed=seed, texts=texts)
        sm = StreamedModel(source_path, ckpt, "float32", trust_remote_code, _stream_device(), needs_logits=False)
        batches = sm.prepare(list(calib.input_ids.split(options.batch_size)))
        folds, report = fit_streamed(sm, batches, plan, blocks, targets, settings.replace_ridge, embedding_name, bar,
                                     objective, weighting)
    else:
        from .forward import LayerStack

        model, tokenizer = _load_model(Path(source_path), options)
        calib = load_calibration(data, tokenizer, samples=settings.replace_samples, seq_len=settings.replace_seq_len,
                                 seed=seed, texts=texts)
        device = next(model.parameters()).device
        batches = list(calib.input_ids.to(device).split(options.batch_size))
        folds, report = fit_in_memory(LayerStack(model, ckpt.arch), batches, plan, blocks, targets,
                                      settings.replace_ridge, embedding_name, bar, objective, weighting)
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
    from ..settings import ScoreOptions

    return ScoreOptions(metric="block-influence", remove=1, dtype="float32", batch_size=8,
                        trust_remote_code=trust_remote_code, stream=getattr(settings, "replace_stream", "auto"))


def _embedding_name(ckpt) -> str:
    names = [t.name for t in ckpt.tensors()]
    found = [n for n in names if n.endswith("embed_tokens.weight") or n.endswith("embed_in.weight")]
    if len(found) != 1:
        raise PlanError("--replace linear: cannot tell which tensor is the input embedding for a block that starts "
                        "at layer 0")
    return found[0]


def _to_disk_bytes(value, ckpt, name: str) -> bytes:
    import torch

    from .streamed_model import _TORCH_DTYPES

    info = next(t for t in ckpt.tensors() if t.name == name)
    t = value.to(getattr(torch, _TORCH_DTYPES[info.dtype])).contiguous()
    if tuple(t.shape) != tuple(info.shape):
        raise PlanError(f"--replace linear: the folded {name} has shape {tuple(t.shape)}, the checkpoint's "
                        f"{tuple(info.shape)}")
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _bar(progress: bool):
    from tqdm.auto import tqdm

    return lambda it, desc="", **k: tqdm(it, desc=desc, disable=not progress, leave=False)
