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
from hone.rollout.engine import (Generation, Partial, SamplingParams, StopCallback, ask, check_every, completes_stop, derive_seed,
                                 stop_tail, stop_text)
from hone.rollout.engine.sampling import row_uniforms, sample_from_logprobs
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

    def generate(self, prompts: Sequence[list[int]], params: SamplingParams, *,
                 callback: StopCallback | None = None) -> list[list[Generation]]:
        check_every(callback)
        flat = [list(p) for p in prompts for _ in range(params.n)]
        seeds = [params.prompt_seed(i) for i in range(len(prompts))]
        # each sample draws from its own generator (prompt i, sample j), so its tokens do not depend on the batch it is in
        generators = [None if seeds[i] is None else torch.Generator(device_of(self.model)).manual_seed(derive_seed(seeds[i], j))
                      for i in range(len(prompts)) for j in range(params.n)]
        out: list[Generation] = []
        for start in range(0, len(flat), self.batch_size):
            end = start + self.batch_size
            out.extend(self._generate_batch(flat[start:end], params, generators[start:end], start, callback))
        return [out[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, generators: list, offset: int,
                        callback: StopCallback | None) -> list[Generation]:
        """One batch of sequences; ``offset`` is its first row's index in the flat list of the call.

        A row a stop string or the callback ends is marked done like one that sampled end-of-sequence:
        it rides along padded until the batch ends (the KV cache is not compacted)."""
        was_training = self.model.training
        self.model.eval()
        device = device_of(self.model)
        ids, mask = (t.to(device) for t in left_pad(prompts, self.pad_id))
        n, width = ids.shape
        eos = torch.tensor(self.eos_ids, device=device)
        tokens = torch.empty((n, 0), dtype=torch.long, device=device)
        logps = torch.empty((n, 0), device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        ended: dict[int, str] = {}  # row -> finish reason, for rows a stop string or the callback ended
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
                    nxt = sample_from_logprobs(logprobs, row_uniforms(generators, device))  # each row's number from its own generator
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
                logps = torch.cat([logps, logprobs.gather(-1, nxt[:, None]).masked_fill(done[:, None], 0.0)], dim=1)
                mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
                done = done | torch.isin(nxt, eos)
                if params.stop and step + 1 >= params.min_new_tokens:  # as vLLM: once min_new_tokens are out
                    done = self._end(done, ended, self._at_stop_string(tokens, done, params.stop), "stop")
                if callback is not None and (step + 1) % callback.every == 0 and step + 1 < params.max_new_tokens:
                    done = self._end(done, ended, self._asked(callback, prompts, tokens, done, offset), "stopped")
                step_ids = nxt[:, None]
                if bool(done.all()):
                    break
        self.model.train(was_training)
        lengths = mask[:, width:].sum(1).tolist()  # a row's tokens are the steps it was running
        tokens, logps = tokens.cpu(), logps.cpu()
        return [self._record(prompts[i], tokens[i, :lengths[i]], logps[i, :lengths[i]], ended.get(i), params.stop) for i in range(n)]

    def _at_stop_string(self, tokens: torch.Tensor, done: torch.Tensor, stop: tuple[str, ...]) -> list[int]:
        """Running rows whose newest token completed a stop string; decodes only a short tail of each."""
        tail = stop_tail(stop)
        running = (~done).nonzero().flatten().tolist()
        if not running:
            return []
        hits = completes_stop(self.tokenizer, tokens[running, -tail:].tolist(), stop)
        return [row for row, hit in zip(running, hits) if hit]

    @staticmethod
    def _asked(callback: StopCallback, prompts: list[list[int]], tokens: torch.Tensor, done: torch.Tensor, offset: int) -> list[int]:
        """Rows the callback stops, shown the running rows under their index in the call's flat list."""
        running = (~done).nonzero().flatten().tolist()
        if not running:
            return []
        completions = tokens[running].tolist()  # a running row has generated at every step so far
        partials = [Partial(offset + row, prompts[row], ids) for row, ids in zip(running, completions)]
        return [index - offset for index in ask(callback, partials)]

    @staticmethod
    def _end(done: torch.Tensor, ended: dict[int, str], rows: list[int], reason: str) -> torch.Tensor:
        for row in rows:
            ended[row] = reason
        return done.index_fill(0, torch.tensor(rows, dtype=torch.long, device=done.device), True) if rows else done

    def _record(self, prompt: list[int], tokens: torch.Tensor, logps: torch.Tensor, reason: str | None,
                stop: tuple[str, ...]) -> Generation:
        ids = tokens.tolist()
        if reason is None:  # a row ends at the end-of-sequence token (kept: the policy must learn to emit it) or at the cap
            reason = "stop" if ids and ids[-1] in self.eos_ids else "length"
        if reason == "stop" and stop and ids[-1] not in self.eos_ids:
            text = stop_text(self.tokenizer, ids, stop)  # cut where the stop string ends, as vLLM does
        else:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Generation(prompt_ids=prompt, completion_ids=ids, text=text, logprobs=logps.tolist(), finish_reason=reason)


def end_of_sequence_ids(model, tokenizer) -> list[int]:
    """The token ids that end a completion: the generation config's, else the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if not ids:
        raise ValueError("model has no end-of-sequence token (generation_config.eos_token_id and tokenizer.eos_token_id are unset)")
    return ids
