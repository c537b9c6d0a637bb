import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hone.watch.checkpoint import load_state, prune_checkpoints, save_checkpoint

WORDS = ["<unk>", "<pad>", "</s>", "the", "answer", "is", "42", "what", "?"]
INPUT_IDS = torch.tensor([[3, 4, 5, 6, 2], [7, 5, 3, 4, 8]])


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def tiny_lora_model() -> PeftModel:
    model = get_peft_model(tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # lora_B starts at zero, which would make the adapter a no-op
                param.normal_(std=0.5)
    return model.eval()


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model(input_ids=INPUT_IDS).logits


def test_full_model_round_trips_with_plain_transformers(tmp_path):
    model, tokenizer = tiny_model(), tiny_tokenizer()
    folder = save_checkpoint(model, tokenizer, tmp_path / "step-1", extra={"step": 1, "reward": torch.tensor(0.5)})
    assert folder == tmp_path / "step-1"
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert torch.equal(logits(reloaded), logits(model))
    assert AutoTokenizer.from_pretrained(folder)("the answer is 42")["input_ids"] == [3, 4, 5, 6]
    assert load_state(folder) == {"step": 1, "reward": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1"]  # no staging folder left


def test_lora_model_saves_adapter_and_merged_weights(tmp_path):
    model = tiny_lora_model()
    before = logits(model)
    with model.disable_adapter():
        assert not torch.allclose(logits(model), before, atol=1e-3)  # the adapter really changes the output

    folder = save_checkpoint(model, tiny_tokenizer(), tmp_path / "step-2")

    merged = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), before, atol=1e-5, rtol=0)

    adapted = PeftModel.from_pretrained(tiny_model(), folder / "adapter").eval()
    torch.testing.assert_close(logits(adapted), before, atol=1e-6, rtol=0)
    assert list((folder / "adapter").glob("*.safetensors"))

    # the training model is untouched: still a PEFT model with unmerged adapters
    assert isinstance(model, PeftModel)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert torch.equal(logits(model), before)
    with model.disable_adapter():
        assert torch.equal(logits(model), logits(tiny_model()))


def test_lora_model_without_merge_writes_only_the_adapter(tmp_path):
    folder = save_checkpoint(tiny_lora_model(), tiny_tokenizer(), tmp_path / "step-3", merge_lora=False)
    assert (folder / "adapter" / "adapter_config.json").is_file()
    assert not list(folder.glob("*.safetensors"))
    assert (folder / "tokenizer.json").is_file()


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    save_checkpoint(tiny_model(seed=0), tiny_tokenizer(), tmp_path / "latest", extra={"step": 1})
    newer = tiny_model(seed=5)
    save_checkpoint(newer, tiny_tokenizer(), tmp_path / "latest", extra={"step": 2})
    assert load_state(tmp_path / "latest") == {"step": 2}
    assert torch.equal(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "latest")), logits(newer))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # the old one is gone, no leftovers


def test_a_crash_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = tiny_model(seed=0)
    save_checkpoint(good, tiny_tokenizer(), tmp_path / "latest", extra={"step": 1})

    broken = tiny_model(seed=5)

    def crash_after_one_file(save_directory, **kwargs):
        (save_directory / "config.json").write_text("{}")  # a half-written checkpoint
        raise RuntimeError("disk full")

    monkeypatch.setattr(broken, "save_pretrained", crash_after_one_file)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(broken, tiny_tokenizer(), tmp_path / "latest", extra={"step": 2})

    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # no staging folder behind
    assert load_state(tmp_path / "latest") == {"step": 1}
    assert torch.equal(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "latest")), logits(good))


def test_a_crash_in_the_merge_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_lora_model()
    save_checkpoint(model, None, tmp_path / "latest", extra={"step": 1})

    def crash(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(LoraModel, "merge_and_unload", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        save_checkpoint(model, None, tmp_path / "latest", extra={"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]
    assert load_state(tmp_path / "latest") == {"step": 1}


def test_extra_state_is_strict_json(tmp_path):
    save_checkpoint(tiny_model(), None, tmp_path / "c", extra={"loss": float("nan"), "eval": {"acc": torch.tensor(0.25)}})
    text = (tmp_path / "c" / "hone_state.json").read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"loss": None, "eval": {"acc": 0.25}}


def test_prune_keeps_the_newest_by_step_number(tmp_path):
    for name in ["step-2", "step-10", "step-9", "step-100", "best", "step-x", ".step-200.tmp-1"]:
        (tmp_path / name).mkdir()
    (tmp_path / "step-1").write_text("a file, not a checkpoint")
    deleted = prune_checkpoints(tmp_path, keep_last=2)
    # by number: 2 < 9 < 10 < 100, so 2 and 9 go (a sort by name would have kept step-9)
    assert [p.name for p in deleted] == ["step-2", "step-9"]
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == [".step-200.tmp-1", "best", "step-1", "step-10", "step-100", "step-x"]
    assert prune_checkpoints(tmp_path, keep_last=5) == []
    assert prune_checkpoints(tmp_path / "missing", keep_last=1) == []
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(tmp_path, keep_last=0)
