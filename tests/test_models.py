import pytest

from hone.models import ModelLoadError, load_model, resolve, tiny_model


def test_alias_resolves_to_the_gguf_inside_the_wheel():
    source = resolve("smollm2-135m-instruct")
    assert source.kind == "gguf" and source.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_hub_ids_stay_hub_ids():
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("/no/such/folder", "model '/no/such/folder': not a model folder, a .gguf file, a hub id or one of the aliases smollm2-135m-instruct"),
        ("missing.gguf", "model 'missing.gguf': no such GGUF file"),
        ("", "model: expected a model name, got ''"),
    ],
)
def test_bad_specs_give_one_line_errors(spec, message):
    with pytest.raises(ModelLoadError) as info:
        resolve(spec)
    assert str(info.value) == message


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="folder has no config.json"):
        resolve(str(tmp_path))


def test_corrupt_gguf_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HONE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(bad))
    assert str(info.value).startswith(f"model file {bad}: cannot read GGUF")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "cache").glob("models/*/config.json"))  # nothing half-written in the cache


def test_tiny_model_shares_the_tokenizer_vocabulary(tokenizer):
    model = tiny_model(hidden_size=32, num_layers=1)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 1
    assert getattr(model.config, "quantization_config", None) is None


def test_embedded_model_loads_plain_and_unquantised():
    model = load_model("smollm2-135m-instruct")
    assert getattr(model, "hf_quantizer", None) is None
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)


def test_copies_of_one_gguf_share_a_cache_folder_and_changed_content_gets_its_own(tmp_path, monkeypatch):
    from hone.models import _gguf_cache_folder

    monkeypatch.setenv("HONE_CACHE", str(tmp_path / "cache"))
    first, second, other = (tmp_path / name for name in ("a/m.gguf", "b/m.gguf", "c/m.gguf"))
    for path, content in ((first, b"GGUF one"), (second, b"GGUF one"), (other, b"GGUF two")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert _gguf_cache_folder(str(first)) == _gguf_cache_folder(str(second))  # a venv per clone: one conversion
    assert _gguf_cache_folder(str(first)) != _gguf_cache_folder(str(other))
    assert _gguf_cache_folder(str(first)).parent == tmp_path / "cache" / "models"
