"""A causal LM whose decoder layers stay on disk until one is needed, and how much memory the process has left.

The model is built with its decoder layers' parameters on the meta device; embeddings, final norm and head are
read from the checkpoint (through transformers' own weight conversion when it renames or fuses tensors while
loading). One capture forward per batch records what the model's loop passes to each layer; `layer(i)` reads
layer i with plain file reads (no mmap, so an address-space cap holds) and frees it on exit; `run` applies it
with the recorded arguments, `logits`/`loss` run the model's own head on a stream's end.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from ..disk.checkpoint import Checkpoint
from ..errors import CheckpointError
from .forward import decoder_of, forwards_replaced, layer_result, replaying, sub_block_stand_ins

_TORCH_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
                 "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
# ---------------------------------------------------------------- memory: does the model fit?

def available_memory() -> int:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit and an address-space limit."""
    import resource

    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        cg = Path("/sys/fs/cgroup")
        raw = (cg / "memory.max").read_text().strip()
        if raw != "max":
            limits.append(int(raw) - int((cg / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft - _address_space_used())
    return max(0, min(limits)) if limits else 1 << 62


def _address_space_used() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def in_memory_bytes(ckpt: Checkpoint, dtype_bytes: int | None) -> int:
    """What loading the whole model for scoring takes: its weights at the scoring dtype plus half for
    activations and the loader's transient copies (measured above the interpreter: 1.5x the float32 weights of
    a bf16 checkpoint scored in float32, bench/RESULTS.md)."""
    from ..disk.safetensors_io import DTYPE_BYTES

    total = 0
    for t in ckpt.tensors():
        total += t.numel * (dtype_bytes or DTYPE_BYTES[t.dtype]) if t.dtype in ("F32", "F16", "BF16", "F64") \
            else t.nbytes
    return int(total * 1.5)


def _release_freed_memory() -> None:
    """Give a freed layer's pages back to the system: glibc keeps freed chunks below its mmap threshold (up to
    32 MiB, so a small model's tensors) in its arenas, and the process would grow by up to a layer per thread."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def _put(root, name: str, value) -> None:
    """Set the parameter (frozen) or buffer at dotted `name` under `root` to `value`."""
    import torch

    owner_name, _, attr = name.rpartition(".")
    owner = root.get_submodule(owner_name) if owner_name else root
    if attr in owner._parameters:
        owner._parameters[attr] = torch.nn.Parameter(value, requires_grad=False)
    else:
        owner._buffers[attr] = value


# ---------------------------------------------------------------- the streamed model

@dataclass
class _Call:
    """What the model's loop passed to one layer for one batch (hidden state excluded)."""

    args: tuple
    kwargs: dict


@dataclass
class StreamBatch:
    ids: object  # LongTensor [b, T]
    embedded: object = None  # layer 0's input
    calls: list[_Call] = field(default_factory=list)


class StreamedModel:
    """A causal LM whose decoder layers stay on disk until one is needed."""

    def __init__(self, folder: str | Path, ckpt: Checkpoint, dtype: str = "float32", trust_remote_code: bool = False,
                 device: str = "cpu", needs_logits: bool = True):
        import torch
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..disk.remote_code import model_trust

        self.ckpt = ckpt
        self.arch = ckpt.arch
        self.device = torch.device(device)
        trust = model_trust(folder, trust_remote_code)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust)
        if dtype == "auto":
            dtype = str(getattr(config, "torch_dtype", None) or getattr(config, "dtype", None) or "float32")
            dtype = dtype.replace("torch.", "")
        self.dtype = getattr(torch, dtype)
        with init_empty_weights(include_buffers=False):  # buffers (RoPE frequencies) are computed, so keep them
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust, dtype=self.dtype)
        self.model = model.eval()
        self.layers = decoder_of(model).layers
        self._files = {name: (f.path, info) for f in ckpt.files for name, info in f.tensors.items()}
        self._overrides: dict[str, object] = {}  # tensor name -> the value to use instead of the file's
        module_names = {id(m): n for n, m in model.named_modules()}
        self._layer_prefix = [module_names[id(layer)] + "." for layer in self.layers]
        self.needs_logits = needs_logits
        head = model.get_output_embeddings()
        self._head = None if head is None or head.weight is model.get_input_embeddings().weight else head
        self._mapping = None if self._names_match() else self._conversion_mapping()
        if self._mapping is None:
            self._load_outside_layers()
        else:
            self._load_outside_layers_converted()

    def _names_match(self) -> bool:
        """Whether every model tensor is stored under its own name (else transformers converts while loading)."""
        text_config = self.model.config.get_text_config()
        tied = set(getattr(self.model, "_tied_weights_keys", None) or ()) \
            if getattr(text_config, "tie_word_embeddings", False) else set()
        return all(n in self._files or n in tied for n, _ in self.model.named_parameters(remove_duplicate=False))

    def _conversion_mapping(self):
        """transformers' own renames and fusions for this architecture (e.g. per-expert MoE weights fused into one
        tensor), applied layer by layer with its own loader."""
        try:
            from transformers.conversion_mapping import get_model_conversion_mapping
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            return get_model_conversion_mapping(self.model, None, None) or []
        except ImportError:  # a transformers without the v5 loader: names must match
            raise CheckpointError("layer streaming needs tensor names that match the model's, or transformers' v5 "
                                  "weight conversion; score in memory instead (--stream off)") from None

    def _convert_into_model(self, names: list[str]) -> None:
        """Load checkpoint tensors `names` into the model through transformers' weight conversion."""
        from transformers.core_model_loading import convert_and_load_state_dict_in_model
        from transformers.modeling_utils import LoadStateDictConfig

        state = {n: self._read(n, cast=False) for n in names}
        convert_and_load_state_dict_in_model(model=self.model, state_dict=state, disk_offload_index=None,
                                             load_config=LoadStateDictConfig(dtype=self.dtype,
                                                                             weight_mapping=self._mapping))

    def _load_outside_layers_converted(self) -> None:
        import torch

        head_names = {name for name, _ in self._head.named_parameters(prefix=self._module_name(self._head))} \
            if self._head is not None and not self.needs_logits else set()
        names = [name for name in self._files
                 if self.ckpt.layer_of(name) is None and name not in head_names]
        self._convert_into_model(names)
        self.model.tie_weights()
        skip = {id(p) for layer in self.layers for p in layer.parameters()}
        if head_names:
            skip |= {id(p) for p in self._head.parameters()}
        still = [name for name, p in self.model.named_parameters() if p.is_meta and id(p) not in skip]
        if still:
            raise CheckpointError(f"the checkpoint has no weights for {still[0]}; it would be left uninitialised")
        if self.device.type != "cpu":  # transformers' loader placed them on the CPU
            for module in self.model.modules():
                for attr, t in list(module._parameters.items()):
                    if t is not None and not t.is_meta:
                        module._parameters[attr] = torch.nn.Parameter(t.data.to(self.device), requires_grad=False)
                for attr, t in list(module._buffers.items()):
                    if t is not None and not t.is_meta:
                        module._buffers[attr] = t.to(self.device)
            self.model.tie_weights()  # the moved embedding is the head again

    def _module_name(self, module) -> str:
        return next(name for name, m in self.model.named_modules() if m is module)

    @staticmethod
    def _named_tensors(module):
        yield from module.named_parameters(remove_duplicate=False)
        for name, buf in module.named_buffers(remove_duplicate=False):
            yield name, buf

    def tensor(self, name: str):
        """Checkpoint tensor `name` as the model computes with it (None if the checkpoint has none)."""
        return self._read(name) if name in self._files else None

    def override(self, name: str, value) -> None:
        """From now on the model computes with `value` for checkpoint tensor `name` (the file is not touched)."""
        if name not in self._files:
            raise CheckpointError(f"the checkpoint has no tensor {name} to replace")
        self._overrides[name] = value

    def set_input_embedding(self, weight) -> None:
        """Use `weight` as the input embedding (until the next `prepare` releases it again)."""
        import torch

        emb = self.model.get_input_embeddings()
        emb.weight = torch.nn.Parameter(weight.to(self.dtype).to(self.device), requires_grad=False)

    def _read(self, name: str, cast: bool = True):
        """One tensor from its file with a plain read (or its override), converted to the scoring dtype if
        floating (and `cast`)."""
        import torch

        if name in self._overrides:
            t = self._overrides[name]
            return (t.to(self.dtype) if cast and t.is_floating_point() else t).to(self.device)
        path, info = self._files[name]
        raw = torch.empty(info.nbytes, dtype=torch.uint8)
        with open(path, "rb") as f:
            f.seek(info.begin)
            if f.readinto(raw.numpy()) != info.nbytes:
                raise CheckpointError(f"{Path(path).name} ended early while reading {name}; the file is truncated")
        t = raw.view(getattr(torch, _TORCH_DTYPES[info.dtype])).reshape(info.shape)
        if not cast:
            return t
        if t.is_floating_point() and t.dtype != self.dtype:
            t = t.to(self.dtype)
        return t.to(self.device)

    def _set(self, module, prefix: str, materialize: bool) -> None:
        import torch

        for name, tensor in list(self._named_tensors(module)):
            full = prefix + name
            if full not in self._files:
                continue  # a computed buffer (kept as built) or a tied weight (tied again below)
            _put(module, name, self._read(full) if materialize else
                 torch.empty(tensor.shape, dtype=tensor.dtype, device="meta"))

    def _load_outside_layers(self) -> None:

        layer_ids = {id(p) for layer in self.layers for p in layer.parameters()}
        if self._head is not None and not self.needs_logits:  # block-influence, angular: no logits, no head read
            layer_ids |= {id(p) for p in self._head.parameters()}
        for name, p in list(self.model.named_parameters(remove_duplicate=False)):
            if id(p) in layer_ids or not p.is_meta or name not in self._files:
                continue
            _put(self.model, name, self._read(name))
        self.model.tie_weights()
        still = [n for n, p in self.model.named_parameters() if p.is_meta and id(p) not in layer_ids]
        if still:
            raise CheckpointError(f"the checkpoint has no {still[0]}; it would be left uninitialised")
        for module_name, module in self.model.named_modules():
            for attr, buf in list(module._buffers.items()):
                if buf is None:
                    continue
                full = f"{module_name}.{attr}" if module_name else attr
                if full in self._files:
                    module._buffers[attr] = self._read(full)
                elif buf.is_meta:
                    raise CheckpointError(f"layer streaming cannot initialise {full}; score in memory (--stream off)")
                else:
                    module._buffers[attr] = buf.to(self.device)

    def _layer_names(self, i: int) -> list[str]:
        return [name for name in self._files if (loc := self.ckpt.layer_of(name)) is not None and loc[0] == i]

    def _materialize_converted(self, i: int, layer) -> None:

        self._convert_into_model(self._layer_names(i))
        missing = [name for name, p in layer.named_parameters() if p.is_meta]
        if missing:
            raise CheckpointError(f"the checkpoint has no weights for layer {i}'s {missing[0]}; it would be left "
                                  "uninitialised")
        if self.device.type != "cpu":
            layer.to(self.device)
        for name, p in list(layer.named_parameters()):
            _put(layer, name, p.data)

    def _free_converted(self, layer) -> None:
        import torch

        for name, p in list(layer.named_parameters()):
            _put(layer, name, torch.empty(p.shape, dtype=p.dtype, device="meta"))

    @contextlib.contextmanager
    def layer(self, i: int, trainable: bool = False):
        """Layer i with its weights read from disk (requiring gradients if `trainable`); freed on exit."""
        layer = self.layers[i]
        if self._mapping is None:
            self._set(layer, self._layer_prefix[i], materialize=True)
        else:
            self._materialize_converted(i, layer)
        if trainable:
            for p in layer.parameters():
                p.requires_grad_(True)
        try:
            yield layer
        finally:
            if self._mapping is None:
                self._set(layer, self._layer_prefix[i], materialize=False)
            else:
                self._free_converted(layer)
            _release_freed_memory()

    def prepare(self, batches) -> list[StreamBatch]:
        """Run the model's loop once per batch with every layer replaced by a recorder."""
        import torch

        out = []
        for ids in batches:
            batch = StreamBatch(ids.to(self.device))
            calls: dict[int, _Call] = {}

            def recorder(i):
                def forward(*args, **kwargs):
                    hidden = args[0] if args else kwargs.pop("hidden_states")
                    if i == 0:
                        batch.embedded = hidden
                    calls[i] = _Call(args[1:], kwargs)
                    return layer_result(self.arch, hidden)
                return forward

            with self._patched({i: recorder(i) for i in range(len(self.layers))}), torch.no_grad():
                decoder_of(self.model)(input_ids=batch.ids, use_cache=False)
            batch.calls = [calls[i] for i in range(len(self.layers))]
            out.append(batch)
        self._release_input_embeddings()
        return out

    def _release_input_embeddings(self) -> None:
        """Layer 0's inputs are recorded, so an input embedding that is not also the head is not needed again."""
        import torch

        emb = self.model.get_input_embeddings()
        if self._head is not None or not self.needs_logits:
            emb.weight = torch.nn.Parameter(torch.empty(emb.weight.shape, dtype=emb.weight.dtype, device="meta"),
                                            requires_grad=False)
            _release_freed_memory()

    def _patched(self, forwards: dict):
        return forwards_replaced([(self.layers[i], fn) for i, fn in forwards.items()])

    def run(self, layer, i: int, batch: StreamBatch, hidden, skip_attention: bool = False, skip_mlp: bool = False):
        """Layer i on `hidden` with the batch's recorded arguments; skipped sub-blocks return zeros."""
        if skip_attention and skip_mlp:
            return hidden
        call = batch.calls[i]
        with forwards_replaced(sub_block_stand_ins(layer, self.arch, skip_attention, skip_mlp)):
            out = layer(hidden, *call.args, **call.kwargs)
        return out[0] if isinstance(out, tuple) else out

    def loss(self, batch: StreamBatch, final_hidden):
        """The model's own LM loss on the stream's end (gradients flow back into `final_hidden`)."""
        import torch

        replay = {i: replaying(self.arch, final_hidden) for i in range(len(self.layers))}
        stand_in = torch.zeros_like(batch.embedded)
        with self._patched(replay):
            return self.model(inputs_embeds=stand_in, labels=batch.ids, use_cache=False).loss

    def logits(self, batch: StreamBatch, final_hidden):
        """The model's own head (final norm, lm_head, soft-capping) on the stream's end."""
        import torch

        replay = {i: replaying(self.arch, final_hidden) for i in range(len(self.layers))}
        # every layer replays the stream's end, so the embedding's output is never used: zeros stand in for it
        stand_in = torch.zeros_like(batch.embedded)
        with self._patched(replay):
            return self.model(inputs_embeds=stand_in, use_cache=False).logits
