"""Names a recipe gives its outputs: the default repo name, the work dir name, the files a sweep writes."""

from __future__ import annotations

from ..plan import Plan
from ..settings import Recipe

PARETO_SVG = "pareto.svg"  # a sweep's quality-against-size chart, also published with an entry


def name_stem(recipe: Recipe) -> str:
    """'<source name>-<plan tag>[-linear][-<recovery>]'."""
    from ..hub import parse_source

    name = parse_source(recipe.source)[0].rstrip("/").split("/")[-1]
    p = recipe.prune
    if p.drop_last:
        tag = f"drop{p.drop_last}"
    elif p.metric:
        tag = f"{p.metric}{p.remove}" if p.remove is not None else f"{p.metric}-p{target_tag(p.target_params)}"
    elif p.plan is not None:
        removed = len(p.plan.drop_layers)
        tag = (f"{p.plan.metric}{removed}" if p.plan.metric and removed else
               Plan.from_dict(p.plan.as_plan_dict(), "the recipe's prune.plan").tag())
    else:
        tag = "pruned"
    method = recipe.recover.label
    return (f"{name}-{tag}" + ("-linear" if p.replace != "none" else "")
            + ("" if method == "none" else f"-{method}"))


def target_text(target: float) -> str:
    return f"{100 * target:g}% of the source's" if target < 1 else f"{target:,.0f}"


def target_tag(target: float) -> str:
    """'85' for 0.85 of the source, '1.3B' for 1.3e9 parameters."""
    if target < 1:
        return f"{100 * target:g}"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if target >= div:
            return f"{target / div:g}{unit}"
    return f"{target:g}"
