"""Benchmarks of the workbench against references timed in the same run: `python -m bench [--quick]`.

Each figure is a ratio of ours to a reference measured side by side (alternating, medians
after a warm-up): the embedder against Chroma's default ONNX embedder on the same model
file, ingest against embedding alone, and the RAG arm against raw llama-cpp-python."""
