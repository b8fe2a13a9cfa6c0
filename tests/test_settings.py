import pytest

from lib.settings import LOCAL_BASE_MODEL, ModelSpec, load_settings, mask_key


def test_defaults_are_offline(tmp_path):
    s = load_settings(env={}, secrets_file=None)
    assert s.base == ModelSpec("local", LOCAL_BASE_MODEL)
    assert s.finetuned is None or s.finetuned.provider == "local"
    assert not s.hosted_configured


def test_key_switches_base_to_hosted_and_is_not_in_repr():
    s = load_settings(env={"OPENAI_API_KEY": "sk-test-1234567890"}, secrets_file=None)
    assert s.base.provider == "openai" and s.hosted_configured
    assert "sk-test" not in repr(s)


def test_precedence_overrides_env_secrets(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('OPENAI_API_KEY = "sk-from-file-000000"\nWORKBENCH_COLLECTION = "fromfile"\n')
    s = load_settings(env={"WORKBENCH_COLLECTION": "fromenv"}, secrets_file=secrets)
    assert s.openai_api_key == "sk-from-file-000000"
    assert s.collection == "fromenv"
    assert load_settings(env={}, secrets_file=secrets, collection="flag").collection == "flag"


def test_bad_secrets_file_says_so(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("OPENAI_API_KEY = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_settings(env={}, secrets_file=secrets)


def test_model_specs_from_env():
    s = load_settings(env={"OPENAI_API_KEY": "k" * 20, "WORKBENCH_FT_MODEL": "ft:gpt-4.1-mini-2025-04-14:org::abc"},
                      secrets_file=None)
    assert s.finetuned == ModelSpec("openai", "ft:gpt-4.1-mini-2025-04-14:org::abc")
    s = load_settings(env={"WORKBENCH_FT_LORA": "/x/adapter.gguf"}, secrets_file=None)
    assert s.finetuned == ModelSpec("local", LOCAL_BASE_MODEL, "/x/adapter.gguf")
    s = load_settings(env={"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "WORKBENCH_BASE_MODEL": "dep"},
                      secrets_file=None)
    assert s.base == ModelSpec("azure", "dep")
    with pytest.raises(ValueError, match="WORKBENCH_PROVIDER"):
        load_settings(env={"WORKBENCH_PROVIDER": "gemini"}, secrets_file=None)


def test_mask_key_never_shows_the_middle():
    assert mask_key(None) == "not set"
    assert mask_key("short") == "set (hidden)"
    masked = mask_key("sk-proj-abcdefghijklmnop1234")
    assert masked.startswith("sk-") and masked.endswith("1234") and "abcdef" not in masked


def test_settings_read_no_data_file(tmp_path):
    """The active fine-tuned model belongs to the workspace, not to the configuration."""
    (tmp_path / "models.json").write_text('{"models": [], "active": "x"}')
    s = load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path)}, secrets_file=None)
    assert s.finetuned is None and s.workspace == "default"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.json"]  # nothing read into, nothing created


def test_one_reader_for_file_and_mapping_with_the_same_key_rules(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('openai_api_key = "sk-lower-0000000000"\nworkbench_workspace = "alice"\n[section]\nx = 1\n')
    from_file = load_settings(env={}, secrets_file=secrets)
    from_mapping = load_settings(env={}, secrets={"openai_api_key": "sk-lower-0000000000",
                                                  "workbench_workspace": "alice", "section": {"x": 1}})
    assert from_file == from_mapping and from_file.openai_api_key == "sk-lower-0000000000"
    assert from_file.workspace == "alice"
    assert load_settings(env={"WORKBENCH_WORKSPACE": "bob"}, secrets_file=secrets).workspace == "bob"  # env wins


def test_default_top_k_serves_the_model_in_use():
    from lib.settings import load_settings

    assert load_settings(env={}, secrets_file=None).default_top_k == 1  # the 135M local model: one source
    hosted = load_settings(env={"OPENAI_API_KEY": "sk-x"}, secrets_file=None)
    assert hosted.base.provider == "openai" and hosted.default_top_k == 4
