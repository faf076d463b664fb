"""`hfprune export-gguf`."""

from __future__ import annotations

import sys

from ._shared import add_overwrite


def register(sub) -> None:
    p = sub.add_parser("export-gguf", help="convert a pruned checkpoint to GGUF (llama.cpp) with per-layer metadata",
                       description="Convert MODEL with llama.cpp's own convert_hf_to_gguf.py (fetched once from the "
                                   "llama-cpp-python source release on the package index, or --llama-cpp PATH), "
                                   "then write the per-layer sliding-window pattern that pruning made irregular. "
                                   "Refuses, with the reason, what no GGUF can express (skip maps, SmolLM3 with "
                                   "moved NoPE layers).")
    p.add_argument("model", metavar="MODEL", help="a checkpoint folder (e.g. the output of hfprune prune/recover)")
    p.add_argument("-o", "--output", metavar="FILE", help="the .gguf file (default: MODEL.gguf beside MODEL, "
                                                         "MODEL-OUTTYPE.gguf with --outtype)")
    p.add_argument("--outtype", default="auto", choices=["auto", "f32", "f16", "bf16", "q8_0"],
                   help="tensor type, as llama.cpp's converter; auto keeps the checkpoint's precision (bf16 stays "
                        "bf16; default)")
    p.add_argument("--llama-cpp", metavar="PATH", help="a llama.cpp checkout whose converter to use")
    add_overwrite(p, "FILE")
    p.set_defaults(func=_cmd_export_gguf)


def _cmd_export_gguf(args) -> int:
    from ..gguf_export import export_gguf

    result = export_gguf(args.model, args.output, outtype=args.outtype, llama_cpp=args.llama_cpp,
                         overwrite=args.overwrite, echo=lambda m: print(m, file=sys.stderr))
    extra = "".join(f"; wrote {k} ({sum(not v for v in vals)} full-attention of {len(vals)} layers)"
                    for k, vals in result.metadata_written.items())
    print(f"wrote {result.output} ({result.bytes / 2**20:.1f} MiB, {result.layers} layers){extra}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0

