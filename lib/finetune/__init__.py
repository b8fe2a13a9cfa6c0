"""Fine-tuning, split by job: training data (`data`), the model registry's records
(`registry`, a leaf), local LoRA training as a job that outlives the page (`local`,
run by `runner`), and OpenAI fine-tuning jobs (`hosted`). Models and jobs are stored
in the workspace (lib/workspace.py)."""

from lib.finetune.data import (
    EXAMPLE_TOKEN_LIMIT,
    MIN_EXAMPLES,
    ROLES,
    SAMPLE_TRAINING_SET,
    Example,
    count_example_tokens,
    from_pairs,
    from_table,
    generate_pairs,
    parse_csv,
    parse_jsonl,
    parse_upload,
    table_rows,
    to_jsonl,
    validate,
)
from lib.finetune.hosted import (
    estimate_training_cost,
    poll_openai_job,
    refresh_openai_job,
    refresh_openai_jobs,
    register_openai_job,
    start_openai_job,
)
from lib.finetune.local import (
    cancel_local_training,
    local_status,
    missing_training_deps,
    start_local_training,
)
from lib.finetune.registry import SHIPPED_ADAPTER, FineTunedModel, new_id, sha256_text, shipped_model

__all__ = [
    "EXAMPLE_TOKEN_LIMIT", "MIN_EXAMPLES", "ROLES", "SAMPLE_TRAINING_SET", "SHIPPED_ADAPTER", "Example",
    "FineTunedModel", "cancel_local_training", "count_example_tokens", "estimate_training_cost", "from_pairs",
    "from_table", "generate_pairs", "local_status", "missing_training_deps", "new_id", "parse_csv", "parse_jsonl",
    "parse_upload", "poll_openai_job", "refresh_openai_job", "refresh_openai_jobs", "register_openai_job",
    "sha256_text", "shipped_model", "start_local_training", "start_openai_job", "table_rows", "to_jsonl", "validate",
]
