"""The reference our embeddings are checked against: mlx-embeddings' BERT (same MLX) with the
model's own tokenizer through transformers, run the way sentence-transformers runs
all-MiniLM-L6-v2 (Transformer -> mean pooling -> Normalize): texts padded per batch, cut at the
model's max_seq_length (sentence_bert_config.json), vectors mean-pooled over the attention mask
and scaled to length 1 (mlx-embeddings' `text_embeds`).

mlx-embeddings is installed without its dependencies (its package __init__ imports mlx-vlm,
which is absent): only its `models` package is loaded, under a stub parent package.

BLAS: the mlx[cpu] wheel bundles the reference (netlib) BLAS, ~10x slower than OpenBLAS on this
CPU; our binary links the system's OpenBLAS (crates/mlx-sys/build.rs) ahead of it. load(...,
openblas=True) does the same for this process -- loads that OpenBLAS globally before MLX, so
that MLX's matrix products resolve to it -- when MLX is not imported yet; `ref.blas` says which
BLAS the reference runs on. Same MLX code either way; only the speed (and float rounding) moves.

    ref = load(model_dir)
    vectors = ref.embed(["hello", "world"])        # (2, 384) float32, unit rows
    ref.token_counts(["hello"])                      # [3]: [CLS] hello [SEP], after the cut
    ref.truncated(["word " * 1000])                  # [True]

Usage as a script: embeddings_reference.py MODEL_DIR TEXT... prints one JSON line per text.
"""

import json
import os
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def openblas_path() -> Path | None:
    """libopenblas.so.0 where crates/mlx-sys/build.rs looks for it (Linux only)."""
    if not sys.platform.startswith("linux") or os.environ.get("MLXK_NO_OPENBLAS") == "1":
        return None
    explicit = os.environ.get("MLXK_OPENBLAS_DIR")
    arch = os.uname().machine
    dirs = [Path(explicit)] if explicit else [Path(f"/usr/lib/{arch}-linux-gnu/openblas-openmp"),
                                              Path("/usr/lib64/openblas-openmp")]
    return next((d / "libopenblas.so.0" for d in dirs if (d / "libopenblas.so.0").exists()), None)


def prefer_openblas() -> str:
    """Loads the system OpenBLAS globally if MLX is not loaded yet; says which BLAS MLX uses."""
    global _BLAS
    if _BLAS is None:
        path = openblas_path()
        if path is not None and "mlx.core" not in sys.modules:
            import ctypes

            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mlxk` runs it
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            _BLAS = f"OpenBLAS ({path})"
        else:
            _BLAS = "the mlx wheel's bundled reference BLAS"
    return _BLAS


_BLAS: str | None = None


def _bert_module():
    """mlx_embeddings.models.bert without running mlx_embeddings/__init__.py."""
    if "mlx_embeddings.models.bert" in sys.modules:
        return sys.modules["mlx_embeddings.models.bert"]
    root = None
    for entry in [sysconfig.get_paths()["purelib"], *sys.path]:
        if entry and (Path(entry) / "mlx_embeddings" / "models" / "bert.py").is_file():
            root = Path(entry) / "mlx_embeddings"
            break
    if root is None:
        raise ImportError("mlx_embeddings is not installed: run ./scripts/setup.sh")
    for name, path in (("mlx_embeddings", root), ("mlx_embeddings.models", root / "models")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    from mlx_embeddings.models import bert

    return bert


class Reference:
    def __init__(self, model_dir: Path, openblas: bool = True):
        if openblas:
            prefer_openblas()
        import mlx.core as mx

        self.blas = _BLAS or "the mlx wheel's bundled reference BLAS"
        from transformers import AutoTokenizer

        bert = _bert_module()
        self.model_dir = Path(model_dir)
        config = json.loads((self.model_dir / "config.json").read_text())
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_length = json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file() else 512
        self.model = bert.Model(bert.ModelArgs.from_dict(config))
        weights = self.model.sanitize(mx.load(str(self.model_dir / "model.safetensors")))
        self.model.load_weights(list(weights.items()))
        self.model.eval()
        mx.eval(self.model.parameters())
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.dimensions = config["hidden_size"]

    def tokenize(self, texts: list[str]) -> dict:
        """What sentence-transformers feeds the model: padded to the longest, cut at max_seq_length."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="np")

    def token_ids(self, text: str) -> list[int]:
        """The ids the model reads for one text ([CLS] ... [SEP]), after the cut."""
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(self.token_ids(t)) for t in texts]

    def truncated(self, texts: list[str]) -> list[bool]:
        """Whether the cut drops tokens of the text."""
        return [len(self.tokenizer(t)["input_ids"]) > self.max_length for t in texts]

    def embed_ids(self, batch: dict) -> np.ndarray:
        import mlx.core as mx

        out = self.model(
            mx.array(batch["input_ids"].astype(np.int32)),
            token_type_ids=mx.array(batch["token_type_ids"].astype(np.int32)) if "token_type_ids" in batch else None,
            attention_mask=mx.array(batch["attention_mask"].astype(np.float32)),
        )
        vectors = out.text_embeds
        mx.eval(vectors)
        return np.array(vectors, dtype=np.float32)

    def embed(self, texts: list[str], batch_size: int = 32, sort_by_length: bool = False) -> np.ndarray:
        """One unit vector per text, in the order given. With sort_by_length, batches are formed
        from texts of similar token count, longest first (sentence-transformers' encode sorts
        too), so that short texts are not padded to a long one's length; the vectors are the
        same up to float rounding either way (padding is masked out)."""
        texts = list(texts)
        order = list(range(len(texts)))
        if sort_by_length:
            counts = self.token_counts(texts)
            order.sort(key=lambda i: -counts[i])
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            result[chunk] = self.embed_ids(self.tokenize([texts[i] for i in chunk]))
        return result


def load(model_dir, openblas: bool = True) -> Reference:
    return Reference(Path(model_dir), openblas=openblas)


def main() -> None:
    ref = load(sys.argv[1])
    texts = sys.argv[2:]
    for text, vector, tokens, cut in zip(texts, ref.embed(texts), ref.token_counts(texts), ref.truncated(texts)):
        print(json.dumps({"text": text, "embedding": vector.tolist(), "tokens": tokens, "truncated": cut}))


if __name__ == "__main__":
    main()
