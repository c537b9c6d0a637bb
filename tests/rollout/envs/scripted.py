"""An engine that answers the first turn of a tool episode with a fixed tool call and samples the rest
from the model: a tiny random model never calls a tool by itself. The scripted tokens carry their
true log-probs under the model, so the learner's importance ratios are honest."""

from __future__ import annotations

import torch

from hone.rollout.engine import Generation, SamplingParams
from hone.rollout.engine.hf import HFEngine

CALL = "<calculator>12 * (3 + 4)</calculator>"


class ScriptedFirstTurn(HFEngine):
    def __init__(self, model, tokenizer, call: str = CALL):
        super().__init__(model, tokenizer, bf16=False)
        self.call_ids = tokenizer(call, add_special_tokens=False)["input_ids"]
        self.turns = 0

    def generate(self, prompts, params: SamplingParams, *, callback=None):
        self.turns += 1
        if "<|im_start|>tool" in self.tokenizer.decode(prompts[0]):  # a later turn: the model speaks for itself
            return super().generate(prompts, params, callback=callback)
        return [[self._scripted(list(p)) for _ in range(params.n)] for p in prompts]

    @torch.no_grad()
    def _scripted(self, prompt: list[int]) -> Generation:
        ids = torch.tensor([prompt + self.call_ids])
        logits = self.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(self.call_ids)[:, None]).squeeze(-1)
        return Generation(prompt, list(self.call_ids), CALL, logprobs.tolist(), "stop")
