"""A GRPO step, hone against TRL's GRPOTrainer on the same CPU work, in one process.

    make bench                       # or: .venv/bin/python -m benchmarks.grpo_step [--steps 3] [--skip-trl]
    .venv/bin/python -m benchmarks.grpo_step --min-new-tokens 64                          # every completion 64 tokens
    .venv/bin/python -m benchmarks.grpo_step --max-new-tokens 128 --min-new-tokens 128    # longer ones

Work (issue 3): SmolLM2-135M-Instruct (the embedded GGUF, dequantised), 8 prompts x 8 samples,
at most 64 new tokens (``--max-new-tokens``), temperature 1.0, one optimizer update per batch, with and without a KL term.
Prints the CPU and its bf16 units, seconds per step (median of ``--steps`` after one warm-up step) for each side, their ratio,
hone's time per phase, the generation throughput of hone's engine against standalone vLLM on the
same prompts, and the physical limit: the step's FLOPs divided by this machine's measured peak
matmul rate. Nothing here is a test; the numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from itertools import islice

import torch

PROMPTS, GROUP, MAX_NEW, KL = 8, 8, 64, 0.04
RECIPE = "recipes/quickstart.yaml"  # the task (2-digit addition) and model; both sides take its prompts


def hone_steps(kl_coef: float, steps: int, skip: bool = False, min_new: int = 0, extra: tuple[str, ...] = (),
               max_new: int = MAX_NEW) -> tuple[list[dict], object]:
    """Per-step metric rows of ``steps`` hone GRPO steps (after one warm-up step), and the run.

    ``skip``: leave rows whose advantages are all 0 out of the update (``train.skip_zero_advantage``,
    hone's default): the same gradient for less work, so not the like-for-like comparison."""
    from hone.config import load_config
    from hone.trainer import loop, setup
    from hone.watch.hooks import Hook

    class Rows(Hook):  # the steps' metrics rows, and no evaluation or checkpoint: only the steps run
        rows: list[dict] = []

        def after_update(self, run, step, row):
            self.rows.append(row)

    overrides = [
        f"rollout.prompts_per_step={PROMPTS}", f"rollout.group_size={GROUP}", f"rollout.max_new_tokens={max_new}",
        f"algorithm.kl_coef={kl_coef}", "train.lr=1e-6", f"train.steps={steps + 1}", "eval.at_start=false",
        f"output.dir={tempfile.mkdtemp(prefix='hone-bench-')}", "output.progress=false", "output.plot=false",
        "rollout.compile=true",  # vLLM compiled: start-up (about 40 s the first time, 12 s cached) is outside s/step, as TRL's is
        "train.compile=true",  # compiled decoder layers in the update, as TRL runs with torch_compile; compiling is in the warm-up step
        f"train.skip_zero_advantage={str(skip).lower()}", f"rollout.min_new_tokens={min_new}", *extra,
    ]
    run = setup(load_config(RECIPE, overrides))
    run.hooks.hooks = [Rows()]
    loop(run)
    return Rows.rows[1:], run


def peak_matmul(dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: torch.device = torch.device("cpu")) -> float:
    """Measured matmul rate in FLOP/s (the best of ``repeats``) on ``device``, at the current thread count on the CPU."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        size, repeats = 8192, 20  # a GPU needs a large matmul to reach its rate
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync()
        began = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - began)
    return 2 * size**3 / min(times)  # the best of the repeats: a peak, and one slow repeat (another process) must not lower it


def step_flops(model, prompt_tokens: int, completion_tokens: int, groups: int, group_size: int, kl: bool, shared: int = 0) -> float:
    """Matmul FLOPs the step needs at least: the prompt of a group once (its samples share it), and the
    ``shared`` leading tokens common to every prompt once a step, each completion token once, in generation
    (with a KV cache), in the forward and backward of the update (the LM head only where a log-prob is
    needed), and in a reference forward when KL is on."""
    vocab, width = model.get_input_embeddings().weight.shape
    body = sum(p.numel() for p in model.parameters()) - vocab * width  # tied embedding/head counted once
    samples = groups * group_size
    prompts = groups * prompt_tokens - (groups - 1) * shared
    tokens, head = prompts + samples * completion_tokens, samples * completion_tokens * vocab * width
    generate = 2 * body * tokens + 2 * head
    train = 6 * body * tokens + 6 * head
    return generate + train + (2 * body * tokens + 2 * head if kl else 0)


def engine_throughput(run, repeats: int = 5, max_new: int = MAX_NEW) -> dict[str, float]:
    """Generated tokens/s (median of ``repeats``, the sides interleaved) of hone's engine, and of the same
    vLLM instance called directly, without log-probs ("vllm") and with the sampled tokens' log-probs
    that hone asks for ("vllm_logprobs"): what hone adds on top of vLLM."""
    from hone.rollout.engine import SamplingParams

    problems = run.rollouts.problems.take(PROMPTS)
    prompts = [run.rollouts.worker.env.prompt_ids(p) for p in problems]
    params = SamplingParams(max_new_tokens=max_new, temperature=1.0, n=GROUP)
    sides = {"hone": lambda: [len(g.completion_ids) for gs in run.rollouts.worker.engine.generate(prompts, params) for g in gs]}
    if hasattr(run.rollouts.worker.engine, "llm"):
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        llm, raw = run.rollouts.worker.engine.llm, [TokensPrompt(prompt_token_ids=p) for p in prompts]
        for name, logprobs in (("vllm", None), ("vllm_logprobs", 0)):
            vparams = VSamplingParams(n=GROUP, temperature=1.0, max_tokens=max_new, logprobs=logprobs)
            sides[name] = lambda vparams=vparams: [len(c.token_ids) for o in llm.generate(raw, vparams, use_tqdm=False) for c in o.outputs]
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, generate in sides.items():
            began = time.perf_counter()
            tokens = sum(generate())
            rates[name].append(tokens / (time.perf_counter() - began))
    return {name: statistics.median(r) for name, r in rates.items()}


def trl_steps(beta: float, steps: int, min_new: int = 0, max_new: int = MAX_NEW) -> dict:
    """TRL's step times, measured in a fresh child process: vLLM keeps memory and patches torch's
    thread control in this one, and TRL's 64-sequence full-vocabulary forward needs the room."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from benchmarks.trl_side import trl_grpo_step_times
    from hone.config import load_config
    from hone.models import local_folder
    from hone.data.tasks import make_task

    cfg = load_config(RECIPE, [])  # the prompts hone's steps take, in hone's order, and one step more
    problems = list(islice(make_task(cfg.task).train_problems(cfg.train.seed), PROMPTS * (steps + 2)))
    args = (local_folder("smollm2-135m-instruct"), [list(p.messages) for p in problems], [p.answer for p in problems])
    kwargs = dict(group_size=GROUP, max_new_tokens=max_new, temperature=1.0, beta=beta, steps=steps, prompts_per_step=PROMPTS,
                  min_new_tokens=min_new, torch_compile=True)  # as hone's side compiles; single steps here: 37.2-46.9 s with, 40.1 without
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(trl_grpo_step_times, *args, **kwargs).result()
        except BrokenProcessPool:  # the child was killed, on this 24 GiB machine by the OOM killer
            return {"step_seconds": [float("nan")], "setting": "the TRL process died (out of memory?)"}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row.get(key, 0.0) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--skip-trl", action="store_true", help="hone only (a TRL step takes about two minutes here)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW, metavar="N",
                        help=f"both sides: at most N new tokens (default {MAX_NEW}; longer completions, longer TRL steps)")
    parser.add_argument("--min-new-tokens", type=int, default=0, metavar="N",
                        help="both sides: no end-of-sequence before N tokens (N = 64 makes every completion 64 tokens: equal work, not equal luck)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for hone's runs, e.g. --set train.device=cuda --set model=FOLDER (repeatable)")
    args = parser.parse_args()
    if not 0 <= args.min_new_tokens <= args.max_new_tokens or args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens {args.max_new_tokens} and --min-new-tokens {args.min_new_tokens}: "
                     "need 1 <= max and 0 <= min <= max")
    extra = tuple(args.set)
    from hone.learner.forward import common_prefix
    from hone.runtime import cpu_description, device_of

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"cpu: {cpu_description()}; torch {torch.__version__} CPU kernels: {torch.backends.cpu.get_cpu_capability()}", flush=True)
    print(f"work: {PROMPTS} prompts x {GROUP} samples, <= {args.max_new_tokens} new tokens (>= {args.min_new_tokens}), temperature 1.0, one update per batch; "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps after a warm-up", flush=True)
    # TRL first, each in a child process, while this process holds no model: memory stays in bounds
    trl = {} if args.skip_trl else {kl: trl_steps(kl, args.steps, args.min_new_tokens, args.max_new_tokens) for kl in (0.0, KL)}
    for kl in (0.0, KL):
        rows, run = hone_steps(kl, args.steps, min_new=args.min_new_tokens, extra=extra, max_new=args.max_new_tokens)
        hone_s = median(rows, "time/step")
        print(f"\n[kl_coef={kl}] hone engine={type(run.rollouts.worker.engine).__name__}: {hone_s:.2f} s/step "
              f"(mean completion {median(rows, 'completion/length'):.1f} tokens)")
        phases = ["generate", "score", "reference", "forward", "backward", "optimizer", "push"]
        print("  phases (median s): " + "  ".join(f"{p} {median(rows, f'time/{p}'):.2f}" for p in phases)
              + f"  other {hone_s - sum(median(rows, f'time/{p}') for p in phases):.2f}")
        prompts = [run.rollouts.worker.env.prompt_ids(p) for p in run.rollouts.problems.take(PROMPTS)]
        shared = common_prefix([torch.tensor(p) for p in prompts])  # as the packed forward computes it once
        flops = step_flops(run.learner.policy, round(statistics.mean(map(len, prompts))), round(median(rows, "completion/length")),
                           PROMPTS, GROUP, kl > 0, shared)
        device = device_of(run.learner.policy)
        peak = peak_matmul(torch.bfloat16, device=device)
        print(f"  FLOP limit: {flops / 1e12:.2f} TFLOP per step / {peak / 1e9:.0f} GFLOP/s bf16 peak ({device.type}) = {flops / peak:.2f} s; "
              f"hone is {hone_s / (flops / peak):.1f}x the limit (fp32 peak {peak_matmul(torch.float32, device=device) / 1e9:.0f} GFLOP/s)")
        if kl == 0.0:
            rates = engine_throughput(run, max_new=args.max_new_tokens)
            line = f"  generation throughput: hone engine {rates['hone']:.0f} tokens/s"
            if "vllm" in rates:
                line += (f", vLLM called directly {rates['vllm']:.0f} tokens/s, ratio {rates['hone'] / rates['vllm']:.2f} "
                         f"(vLLM with the log-probs hone asks for: {rates['vllm_logprobs']:.0f} tokens/s, "
                         f"ratio {rates['hone'] / rates['vllm_logprobs']:.2f})")
            print(line)
        del run
        if kl in trl:
            trl_s = statistics.median(trl[kl]["step_seconds"])
            lengths = trl[kl].get("mean_lengths") or [float("nan")]
            print(f"  TRL GRPOTrainer ({trl[kl]['setting']}): {trl_s:.2f} s/step {[round(s, 1) for s in trl[kl]['step_seconds']]} "
                  f"(mean completion {statistics.median(lengths):.1f} tokens)")
            print(f"  speed-up ratio (TRL s/step / hone s/step): {trl_s / hone_s:.2f}x", flush=True)
            # the sides sample their own completions, so their lengths differ by chance; per token evens that out
            hone_len, trl_len = median(rows, "completion/length"), statistics.median(lengths)
            print(f"  per 1000 completion tokens: hone {1000 * hone_s / (hone_len * PROMPTS * GROUP):.2f} s, "
                  f"TRL {1000 * trl_s / (trl_len * PROMPTS * GROUP):.2f} s, length-normalised ratio {trl_s / trl_len / (hone_s / hone_len):.2f}x", flush=True)
    # hone's default leaves rows with all-zero advantages (groups whose rewards were all equal) out of the
    # update when nothing else in the loss could move them: the same gradient, less work than TRL does
    rows, run = hone_steps(0.0, args.steps, skip=True, min_new=args.min_new_tokens, extra=extra, max_new=args.max_new_tokens)
    skip_s = median(rows, "time/step")
    line = (f"\n[kl_coef=0.0, train.skip_zero_advantage=true] hone: {skip_s:.2f} s/step, "
            f"{100 * median(rows, 'update/rows_skipped'):.0f}% of rows skipped (median), forward {median(rows, 'time/forward'):.2f} s, "
            f"backward {median(rows, 'time/backward'):.2f} s")
    if 0.0 in trl:
        line += f"; against TRL's step (not the same work): {statistics.median(trl[0.0]['step_seconds']) / skip_s:.2f}x"
    print(line, flush=True)
    del run


if __name__ == "__main__":
    main()
