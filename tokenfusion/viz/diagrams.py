"""Diagrams of the five strategies as Graphviz DOT text (``st.graphviz_chart`` draws them).

With an :class:`~tokenfusion.explain.Anatomy` the boxes carry the live numbers of a loaded
model (token grids, width, depth, gates); without one they carry the symbols of the design.
"""
from __future__ import annotations

from ..explain.anatomy import Anatomy
from .style import KIND_COLOURS

__all__ = ["STRATEGY_SUMMARIES", "strategy_diagram"]

STRATEGY_SUMMARIES = {
    "cnn": "Baseline: the CNN trunk, global average pooling, a linear head. Local features only.",
    "vit": "Baseline: the image cut into patches, one token each, a class token, L transformer blocks.",
    "late": "Late fusion, in parallel: a CNN-token stream and a patch-token stream run side by side, "
            "each with its own class token; their outputs are concatenated and F fusion blocks with a "
            "fresh class token attend over both.",
    "early": "Early fusion: one sequence [class; CNN tokens; patch tokens] through all L blocks, so every "
             "layer can attend across both kinds.",
    "layerwise": "Layer-by-layer fusion: a patch-token stream; before each block the stream reads CNN "
                 "tokens by cross-attention, scaled by a learned gate tanh(g) that starts at 0.",
}
_FILL = {"cnn": "#FBE3D6", "patch": "#DCE8F8", "cls": "#ECEDEF", "plain": "#FFFFFF"}


def _node(name: str, label: str, kind: str = "plain") -> str:
    colour = KIND_COLOURS.get(kind, "#5F6B7A")
    return f'  {name} [label="{label}", fillcolor="{_FILL[kind]}", color="{colour}"];'


def _grid(grid: tuple[int, int] | None, symbol: str) -> str:
    return f"{grid[0]}×{grid[1]} = {grid[0] * grid[1]}" if grid else symbol


def _blocks(count: int | None, symbol: str) -> str:
    return f"{count} blocks" if count else f"{symbol} blocks"


def strategy_diagram(arch: str, facts: Anatomy | None = None) -> str:
    """A left-to-right DOT diagram of ``arch`` (``cnn, vit, late, early, layerwise``)."""
    f = facts if facts is not None and facts.arch == arch else None
    cnn = _grid(f.cnn_grid if f else None, "h×w")
    patch = _grid(f.patch_grid if f else None, "N")
    depth = f.depth if f else None
    dim = f"D = {f.embed_dim}" if f else "D channels"
    image = f"image\\n{f.img_size}×{f.img_size}×3" if f else "image"
    patch_size = f"{f.patch_size}×{f.patch_size}" if f else "p×p"
    lines = [_node("img", image), _node("head", "linear head → logits")]
    last = "×".join(map(str, f.stage_grids[-1])) if f and f.stage_grids else ""
    trunk = _node("trunk", f"CNN trunk\\n→ {last}" if last else "CNN trunk", "cnn")
    cnn_tokens = _node("ctok", f"1×1 projection\\nCNN tokens {cnn}\\n{dim}", "cnn")
    patch_tokens = _node("ptok", f"{patch_size} patches\\npatch tokens {patch}\\n{dim}", "patch")
    edges: list[str] = []
    if arch == "cnn":
        lines += [trunk, _node("pool", "global average pool")]
        edges += ["img -> trunk -> pool -> head"]
    elif arch == "vit":
        lines += [patch_tokens, _node("blocks", f"[cls; patch tokens]\\n{_blocks(depth, 'L')}", "patch")]
        edges += ["img -> ptok -> blocks", 'blocks -> head [label="class token"]']
    elif arch == "early":
        lines += [trunk, cnn_tokens, patch_tokens,
                  _node("blocks", f"[cls; CNN + e_cnn; patch + e_patch]\\n{_blocks(depth, 'L')}", "cls")]
        edges += ["img -> trunk -> ctok -> blocks", "img -> ptok -> blocks", 'blocks -> head [label="class token"]']
    elif arch == "late":
        fusion = f.fusion_depth if f else None
        lines += [trunk, cnn_tokens, patch_tokens,
                  _node("cstream", f"CNN stream\\n[cls_c; CNN tokens]\\n{_blocks(depth, 'L')}", "cnn"),
                  _node("pstream", f"patch stream\\n[cls_p; patch tokens]\\n{_blocks(depth, 'L')}", "patch"),
                  _node("fusion", f"concatenate behind a fresh cls\\n{_blocks(fusion, 'F')} fusion", "cls")]
        edges += ["img -> trunk -> ctok -> cstream -> fusion", "img -> ptok -> pstream -> fusion",
                  'fusion -> head [label="fresh class token"]']
    elif arch == "layerwise":
        lines += [trunk, patch_tokens]
        edges += ["img -> trunk", "img -> ptok"]
        layers = list(range(depth)) if depth else [0, 1]
        shown = layers if len(layers) <= 6 else layers[:2] + [None] + layers[-2:]
        previous = "ptok"
        for layer in shown:
            if layer is None:
                lines.append(_node("more", "…", "plain"))
                edges.append(f"{previous} -> more")
                previous = "more"
                continue
            gate = f"\\ngate tanh(g) = {f.gates[layer]:+.3f}" if f and f.gates else "\\ngate tanh(g_l)"
            lines += [_node(f"x{layer}", f"cross-attention {layer}\\npatch queries, CNN keys{gate}", "cnn"),
                      _node(f"b{layer}", f"block {layer}", "patch")]
            edges += [f"{previous} -> x{layer} -> b{layer}", f'trunk -> x{layer} [style=dashed, label="CNN tokens"]']
            previous = f"b{layer}"
        edges.append(f'{previous} -> head [label="class token"]')
    else:
        raise ValueError(f"Unknown architecture {arch!r}. Expected one of {list(STRATEGY_SUMMARIES)}")
    return "\n".join([
        "digraph {", '  rankdir=LR; bgcolor="transparent";',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, penwidth=1.5];',
        '  edge [fontname="Helvetica", fontsize=9, color="#5F6B7A"];',
        *lines, *(f"  {e};" for e in edges), "}",
    ])
