"""The transformers generation engine: a plain sampling loop over a KV cache.

We sample with our own loop rather than ``model.generate`` so that the log-probability of every
sampled token under the *sampling* distribution (after temperature and top-p) comes out of the
same computation that chose the token, which is what importance ratios and the train/inference
mismatch check need.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from hone.data.padding import left_pad, positions
from hone.rollout.engine import Generation, SamplingParams
from hone.runtime import autocast, device_of


def sampling_logprobs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Log-probs of the distribution we sample from: logits / T, then the top-p nucleus renormalised."""
    logprobs = torch.log_softmax(logits.float() / max(temperature, 1e-6), dim=-1)
    if top_p < 1.0:
        sorted_lp, order = logprobs.sort(dim=-1, descending=True)
        # keep a token if the mass strictly before it is below top_p (the top token always stays)
        before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()
        drop = before >= top_p
        sorted_lp = sorted_lp.masked_fill(drop, float("-inf"))
        logprobs = torch.full_like(logprobs, float("-inf")).scatter(-1, order, sorted_lp)
        logprobs = torch.log_softmax(logprobs, dim=-1)
    return logprobs


class HFEngine:
    """Generates with a transformers causal LM in this process.

    With ``model`` shared with the trainer (the default), there is nothing to copy after an update
    and ``load_weights`` is a no-op; give it its own model to keep a separate copy in sync instead.
    """

    def __init__(self, model, tokenizer, *, shared: bool = True, batch_size: int = 64, bf16: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.shared = shared
        self.batch_size = batch_size
        self.bf16 = bf16
        self.eos_ids = end_of_sequence_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        if self.shared:
            return
        own = self.model.state_dict()  # tensors share storage with the parameters (tied ones included)
        with torch.no_grad():
            for name, tensor in weights:
                if name not in own:
                    raise KeyError(f"engine model has no weight named {name!r}")
                own[name].copy_(tensor)

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Generation]]:
        flat = [list(p) for p in prompts for _ in range(params.n)]
        generator = torch.Generator(device_of(self.model)).manual_seed(params.seed) if params.seed is not None else None
        out: list[Generation] = []
        for start in range(0, len(flat), self.batch_size):
            out.extend(self._generate_batch(flat[start:start + self.batch_size], params, generator))
        return [out[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, generator) -> list[Generation]:
        was_training = self.model.training
        self.model.eval()
        device = device_of(self.model)
        ids, mask = (t.to(device) for t in left_pad(prompts, self.pad_id))
        n = ids.shape[0]
        eos = torch.tensor(self.eos_ids, device=device)
        tokens = torch.empty((n, 0), dtype=torch.long, device=device)
        logps = torch.empty((n, 0), device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        cache, step_ids = None, ids
        with autocast(device, self.bf16):
            for step in range(params.max_new_tokens):
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=positions(mask)[:, -step_ids.shape[1]:],
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache = out.past_key_values
                logits = out.logits[:, -1, :]
                if step < params.min_new_tokens:
                    logits = logits.index_fill(-1, eos, float("-inf"))
                if params.temperature == 0:
                    logprobs = torch.log_softmax(logits.float(), dim=-1)
                    nxt = logprobs.argmax(-1)
                else:
                    logprobs = sampling_logprobs(logits, params.temperature, params.top_p)
                    # exponential race: argmax p_i / E_i with E_i ~ Exp(1) samples i with probability p_i,
                    # and is several times cheaper than torch.multinomial over a 49k vocabulary
                    race = torch.empty_like(logprobs).exponential_(generator=generator)
                    nxt = (logprobs.exp() / race).argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
                logps = torch.cat([logps, logprobs.gather(-1, nxt[:, None]).masked_fill(done[:, None], 0.0)], dim=1)
                mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
                done = done | torch.isin(nxt, eos)
                step_ids = nxt[:, None]
                if bool(done.all()):
                    break
        self.model.train(was_training)
        tokens, logps, done = tokens.cpu(), logps.cpu(), done.cpu()
        return [self._record(prompts[i], tokens[i], logps[i], bool(done[i])) for i in range(n)]

    def _record(self, prompt: list[int], tokens: torch.Tensor, logps: torch.Tensor, stopped: bool) -> Generation:
        ids = tokens.tolist()
        if stopped:  # keep the end-of-sequence token: the policy must learn to emit it
            end = next(i for i, t in enumerate(ids) if t in self.eos_ids) + 1
        else:
            end = len(ids)
        ids = ids[:end]
        return Generation(
            prompt_ids=prompt,
            completion_ids=ids,
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            logprobs=logps[:end].tolist(),
            finish_reason="stop" if stopped else "length",
        )


def end_of_sequence_ids(model, tokenizer) -> list[int]:
    """The token ids that end a completion: the generation config's, else the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if not ids:
        raise ValueError("model has no end-of-sequence token (generation_config.eos_token_id and tokenizer.eos_token_id are unset)")
    return ids
