"""What a call cost. Prices come from the genai-prices library (maintained,
offline snapshot); a small dated file fills what it lacks (some fine-tuned
families, and training prices). Local models cost nothing per token."""

from __future__ import annotations

import functools
import json
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

from lib.settings import ModelSpec

EXTRA_PRICES = Path(__file__).parent / "data" / "openai_finetune_prices.json"
LOCAL_NOTE = "local model: no per-token charge"
OLLAMA_NOTE = "Ollama model on this machine's server: no per-token charge"


@functools.lru_cache(maxsize=1)
def extra_prices() -> dict[str, Any]:
    return json.loads(EXTRA_PRICES.read_text())


def _extra_inference(model: str) -> dict[str, float] | None:
    table = extra_prices()["inference"]
    # longest prefix first, so "ft:gpt-4.1-mini" is not priced as "ft:gpt-4.1"
    for prefix in sorted(table, key=len, reverse=True):
        if model.startswith(prefix + "-") or model.startswith(prefix + ":") or model == prefix:
            return table[prefix]
    return None


def price_tokens(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
                 provider_id: str = "openai") -> tuple[float | None, str]:
    """(USD, note) for one call of an OpenAI model id (fine-tuned ids included); None if unknown."""
    extra = _extra_inference(model)
    if extra is not None:
        fresh = prompt_tokens - cached_tokens
        usd = (fresh * extra["input_mtok"] + cached_tokens * extra.get("cached_input_mtok", extra["input_mtok"])
               + completion_tokens * extra["output_mtok"]) / 1_000_000
        return usd, f"fine-tuned price, from {EXTRA_PRICES.name} (checked {extra_prices()['checked']})"
    from genai_prices import Usage, calc_price

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = calc_price(Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens,
                                    cache_read_tokens=cached_tokens or None),
                              model_ref=model, provider_id=provider_id)
    except LookupError:
        return None, f"no price known for {model}"
    except Exception as exc:  # genai-prices raises its own errors for unmatched models
        if "not found" in str(exc).lower() or "unable" in str(exc).lower() or "no " in str(exc).lower():
            return None, f"no price known for {model}"
        raise
    return float(calc.total_price if isinstance(calc.total_price, Decimal) else Decimal(calc.total_price)), \
        f"genai-prices: {calc.model.id}"


def cost_for(spec: ModelSpec, usage: Any) -> tuple[float | None, str]:
    """Cost of one arm's call. Azure deployments are priced as the OpenAI model they are named after."""
    if spec.provider == "local":
        return 0.0, LOCAL_NOTE
    if spec.provider == "ollama":
        return 0.0, OLLAMA_NOTE
    return price_tokens(spec.name, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


def training_price_per_mtok(base_model: str) -> float | None:
    table = extra_prices()["training_per_mtok"]
    for prefix in sorted(table, key=len, reverse=True):
        if base_model.startswith(prefix):
            return float(table[prefix])
    return None


def price_card(model: str, provider: str = "openai") -> dict[str, Any]:
    """The per-token prices a cost was computed with, and where and when they come from: USD per million input,
    cached-input and output tokens (None when unknown), `source` and `as_of`. For the Decide page and the report,
    next to the costs."""
    out: dict[str, Any] = {"model": model, "input_mtok": None, "cached_input_mtok": None, "output_mtok": None,
                           "source": "", "as_of": ""}
    if provider == "local":
        return {**out, "source": "local model: no per-token price (hardware time prices it)"}
    extra = _extra_inference(model)
    if extra is not None:
        return {**out, "input_mtok": extra["input_mtok"], "cached_input_mtok": extra.get("cached_input_mtok"),
                "output_mtok": extra["output_mtok"], "source": f"{EXTRA_PRICES.name} ({extra_prices()['source']})",
                "as_of": f"checked {extra_prices()['checked']}"}
    from importlib.metadata import version

    from genai_prices import Usage, calc_price

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = calc_price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model_ref=model,
                              provider_id="openai")
    except Exception:
        return {**out, "source": f"no price known for {model}"}
    p = calc.model_price

    def mtok(value: Any) -> float | None:
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None  # tiered prices: not one number

    return {**out, "model": calc.model.id, "input_mtok": mtok(getattr(p, "input_mtok", None)),
            "cached_input_mtok": mtok(getattr(p, "cache_read_mtok", None)),
            "output_mtok": mtok(getattr(p, "output_mtok", None)),
            "source": f"genai-prices {version('genai-prices')}",
            "as_of": f"the price data released with genai-prices {version('genai-prices')}"}
