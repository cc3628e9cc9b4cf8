"""A stand-in for the few parts of vLLM 0.33 that `genome_nb.vllm_engine.VLLMEngine` uses, for tests without a GPU.

`install()` puts modules named `vllm`, `vllm.inputs`, `vllm.lora`, `vllm.lora.request`, `vllm.logprobs` and
`vllm.sampling_params` into `sys.modules`. Their constructors check their arguments against what vLLM 0.33 accepts
and raise as vLLM would; `LLM.generate` computes its outputs with the transformers model found in the directory it
was given (PEFT for the adapters), so scores can be compared with `HFEngine`. What was read, and where:

- `LLM(**kwargs)` passes its keyword arguments to `EngineArgs`; an unknown one is a TypeError (vllm/entrypoints/llm.py).
- `dtype`: `ModelDType = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]` (vllm/config/model.py).
- `logprobs_mode`: `Literal["raw_logits", "raw_logprobs", "processed_logits", "processed_logprobs"]`, default
  `raw_logprobs`; `max_logprobs` default 20 (vllm/config/model.py).
- `max_lora_rank`: `MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]`; `max_cpu_loras` defaults to
  `max_loras` and must be ≥ it (vllm/config/lora.py).
- `SamplingParams`: `logprobs` / `prompt_logprobs` ≤ `max_logprobs` (checked when a request is added);
  `logprob_token_ids` at most `MAX_LOGPROB_TOKEN_IDS = 128` ids, in the vocabulary, and `logprobs` equal to its
  length when both are set (vllm/sampling_params.py, `_validate_logprobs`).
- The sampler computes raw log-probabilities (`log_softmax` of the model's logits) before any logits processor
  (`allowed_token_ids`, penalties, temperature) runs; `processed_*` modes read them after (vllm/v1/sample/sampler.py).

Stricter than vLLM in one place, on purpose: one `generate` call may name at most `max_cpu_loras` distinct adapters
(vLLM would evict and reload them from disk, every generation).
"""
from __future__ import annotations
import contextlib, copy, json, sys, types
from dataclasses import dataclass, field
from pathlib import Path

import torch

__version__ = "0.33.0"
MODEL_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
LOGPROBS_MODES = ("raw_logits", "raw_logprobs", "processed_logits", "processed_logprobs")
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MAX_LOGPROB_TOKEN_IDS = 128
_TORCH = {"half": torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16, "float": torch.float32, "float32": torch.float32}
ENGINE_ARGS = {  # the EngineArgs fields the engine may pass, with vLLM's defaults
    "tokenizer": None, "dtype": "auto", "seed": 0, "enable_lora": False, "max_loras": 1, "max_lora_rank": 16,
    "max_cpu_loras": None, "enable_prefix_caching": None, "logprobs_mode": "raw_logprobs", "max_logprobs": 20,
    "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1, "max_model_len": None, "enforce_eager": False,
    "trust_remote_code": False, "max_num_seqs": None, "max_num_batched_tokens": None}


class VLLMValidationError(ValueError): pass


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    "The sampling parameters, checked like vLLM's `SamplingParams.__post_init__` / `_verify_args`."
    SUPPORTS_LOGPROB_TOKEN_IDS = True   # False stands in for a vLLM without `logprob_token_ids`
    _FIELDS = dict(n=1, temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, seed=None, stop=None, stop_token_ids=None,
                   ignore_eos=False, max_tokens=16, min_tokens=0, logprobs=None, prompt_logprobs=None,
                   logprob_token_ids=None, allowed_token_ids=None, detokenize=True, skip_special_tokens=True)
    __struct_fields__ = tuple(_FIELDS)  # vLLM's SamplingParams is a msgspec.Struct: its fields are listed here

    def __init__(self, **kw):
        unknown = sorted(set(kw) - set(self._FIELDS))
        if "logprob_token_ids" in kw and not self.SUPPORTS_LOGPROB_TOKEN_IDS: unknown.append("logprob_token_ids")
        if unknown: raise TypeError(f"Unexpected keyword argument(s) {unknown!r}")
        for k, v in {**self._FIELDS, **kw}.items(): setattr(self, k, v)
        if not 0.0 <= self.temperature <= 2.0: raise VLLMValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0: raise VLLMValidationError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens is not None and self.max_tokens < 1: raise VLLMValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        for f in ("logprobs", "prompt_logprobs"):
            v = getattr(self, f)
            if v is not None and v != -1 and v < 0: raise VLLMValidationError(f"{f} must be non-negative or -1, got {v}.")
        if self.logprob_token_ids is not None:
            n = len(self.logprob_token_ids)
            if n > MAX_LOGPROB_TOKEN_IDS:
                raise VLLMValidationError(f"Requested logprob_token_ids of length {n}, which is greater than max allowed: {MAX_LOGPROB_TOKEN_IDS}")
            if self.logprobs is not None and self.logprobs != n:
                raise VLLMValidationError(f"When both logprobs and logprob_token_ids are set, logprobs must equal len(logprob_token_ids).")
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            raise VLLMValidationError("allowed_token_ids is not None and empty!")

    def verify(self, llm: "LLM") -> None:
        "The checks vLLM runs when the request reaches the engine (`SamplingParams.verify`)."
        cap, V = llm.kwargs["max_logprobs"], llm.vocab_size
        cap = V if cap == -1 else cap
        for f in ("logprobs", "prompt_logprobs"):
            v = getattr(self, f)
            v = V if v == -1 else v
            if v and v > cap: raise VLLMValidationError(f"Requested {f.replace('_', ' ')} of {v}, which is greater than max allowed: {cap}")
        for f in ("logprob_token_ids", "allowed_token_ids"):
            bad = [t for t in (getattr(self, f) or []) if not 0 <= t < V]
            if bad: raise VLLMValidationError(f"token_id(s) {bad} in {f} contain out-of-vocab token ids. Vocabulary size: {V}")


def TokensPrompt(prompt_token_ids): return {"prompt_token_ids": list(prompt_token_ids)}


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list
    prompt_logprobs: list | None
    outputs: list = field(default_factory=list)


class _Config:
    def __init__(self, dtype): self.dtype = dtype

class _Engine:
    def __init__(self, dtype): self.model_config = _Config(dtype)


class LLM:
    "vLLM's offline entry point: the constructor checks the engine arguments; `generate` runs a transformers model."
    instances: list = []

    def __init__(self, model: str, **kwargs):
        unknown = sorted(set(kwargs) - set(ENGINE_ARGS))
        if unknown: raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {unknown[0]!r}")
        kw = {**ENGINE_ARGS, **kwargs}
        path = Path(model)
        if not (path / "config.json").is_file():   # offline (HF_HUB_OFFLINE=1) a hub id that is not cached cannot resolve
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the "
                          f"cached files. Check your internet connection or see how to run the library in offline mode: {model!r}")
        if isinstance(kw["dtype"], str) and kw["dtype"] not in MODEL_DTYPES:
            raise ValueError(f"Unknown dtype: {kw['dtype']!r}. Valid values: {MODEL_DTYPES}")
        if kw["logprobs_mode"] not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode: Input should be {LOGPROBS_MODES}, got {kw['logprobs_mode']!r}")
        if kw["enable_lora"]:
            if kw["max_lora_rank"] not in MAX_LORA_RANKS:
                raise ValueError(f"max_lora_rank: Input should be one of {MAX_LORA_RANKS}, got {kw['max_lora_rank']!r}")
            if kw["max_loras"] < 1: raise ValueError(f"max_loras: Input should be greater than or equal to 1")
            if kw["max_cpu_loras"] is None: kw["max_cpu_loras"] = kw["max_loras"]
            elif kw["max_cpu_loras"] < kw["max_loras"]:
                raise ValueError(f"max_cpu_loras ({kw['max_cpu_loras']}) must be >= max_loras ({kw['max_loras']}).")
        if not 0 < kw["gpu_memory_utilization"] <= 1:
            raise ValueError(f"GPU memory utilization must be within (0, 1]. Got {kw['gpu_memory_utilization']}.")
        if not isinstance(kw["tensor_parallel_size"], int) or kw["tensor_parallel_size"] < 1:
            raise ValueError(f"tensor_parallel_size must be a positive integer, got {kw['tensor_parallel_size']!r}")
        self.model_path, self.kwargs = str(path), kw
        cfg = json.loads((path / "config.json").read_text())
        self.vocab_size = cfg["vocab_size"]
        dt = kw["dtype"]
        if dt == "auto": dt = {"float32": torch.float16, "float16": torch.float16}.get(cfg.get("dtype") or cfg.get("torch_dtype"), torch.bfloat16)
        self.dtype = dt if isinstance(dt, torch.dtype) else _TORCH[dt]
        self.llm_engine = _Engine(self.dtype)
        self._model, self._tok, self._loras, self.calls = None, None, {}, []
        LLM.instances.append(self)

    def get_tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer
            self._tok = AutoTokenizer.from_pretrained(self.model_path)
        return self._tok

    def _base(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM
            self._model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype).eval()
        return self._model

    def _lora_model(self, lr):
        if lr is None: return self._base()
        if lr.lora_int_id not in self._loras:
            from peft import PeftModel
            r = json.loads((Path(lr.lora_path) / "adapter_config.json").read_text())["r"]
            if r > self.kwargs["max_lora_rank"]:
                raise ValueError(f"LoRA rank {r} is greater than max_lora_rank {self.kwargs['max_lora_rank']}.")
            self._loras[lr.lora_int_id] = PeftModel.from_pretrained(copy.deepcopy(self._base()), lr.lora_path).eval()
        return self._loras[lr.lora_int_id]

    @torch.inference_mode()
    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None):
        prompts = list(prompts)
        sps = sampling_params if isinstance(sampling_params, (list, tuple)) else [sampling_params or SamplingParams()] * len(prompts)
        lrs = lora_request if isinstance(lora_request, (list, tuple)) else [lora_request] * len(prompts)
        if len(sps) != len(prompts) or len(lrs) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params / lora_request must be the same.")
        if any(lr is not None for lr in lrs) and not self.kwargs["enable_lora"]:
            raise ValueError("LoRA is not enabled! Please set `enable_lora=True` when initializing the LLM.")
        distinct = {lr.lora_int_id for lr in lrs if lr is not None}
        if len(distinct) > (self.kwargs["max_cpu_loras"] or 0) and self.kwargs["enable_lora"]:
            raise ValueError(f"one generate call names {len(distinct)} adapters, more than max_cpu_loras="
                             f"{self.kwargs['max_cpu_loras']}: vLLM would evict and reload them from disk")
        for sp in sps: sp.verify(self)
        self.calls.append(dict(n=len(prompts), adapters=len(distinct)))
        return [self._one(k, p, sp, lr) for k, (p, sp, lr) in enumerate(zip(prompts, sps, lrs))]

    def _one(self, k, prompt, sp, lr):
        if not isinstance(prompt, dict) or "prompt_token_ids" not in prompt: raise TypeError("prompts must be TokensPrompt dicts")
        ids, mode, m = list(prompt["prompt_token_ids"]), self.kwargs["logprobs_mode"], self._lora_model(lr)
        mml = self.kwargs["max_model_len"]
        if mml is not None and len(ids) + (sp.max_tokens or 0) > mml:
            raise ValueError(f"The decoder prompt (length {len(ids)}) plus max_tokens is longer than max_model_len {mml}")
        logits = m(input_ids=torch.tensor([ids])).logits[0].float()
        raw = torch.log_softmax(logits, -1)
        plp = None
        if sp.prompt_logprobs is not None:   # V1 computes prompt log-probabilities from the raw logits
            plp = [None] + [self._entry(raw[j - 1], ids[j], sp.prompt_logprobs, None) for j in range(1, len(ids))]
        gen, glp, seq = torch.Generator().manual_seed(sp.seed if sp.seed is not None else 0), [], list(ids)
        out = []
        for step in range(sp.max_tokens or 1):
            lg = logits[-1] if step == 0 else m(input_ids=torch.tensor([seq])).logits[0, -1].float()
            proc = lg.clone()
            if sp.allowed_token_ids is not None:
                keep = torch.full_like(proc, float("-inf")); keep[sp.allowed_token_ids] = 0; proc = proc + keep
            if sp.temperature > 1e-5: proc = proc / sp.temperature
            t = int(proc.argmax()) if sp.temperature <= 1e-5 else int(torch.multinomial(torch.softmax(proc, -1), 1, generator=gen))
            if sp.logprobs is not None or sp.logprob_token_ids is not None:
                src = {"raw_logprobs": torch.log_softmax(lg, -1), "raw_logits": lg,
                       "processed_logprobs": torch.log_softmax(proc, -1), "processed_logits": proc}[mode]
                glp.append(self._entry(src, t, sp.logprobs or 0, sp.logprob_token_ids))
            out.append(t); seq.append(t)
            if t == self.get_tokenizer().eos_token_id: break
        text = self.get_tokenizer().decode([t for t in out if t != self.get_tokenizer().eos_token_id], skip_special_tokens=True)
        return RequestOutput(str(k), ids, plp, [CompletionOutput(0, text, out, None, glp or None)])

    def _entry(self, values, token, k, token_ids):
        "{token id: Logprob} for the chosen token and the top-k (or exactly `token_ids`)."
        ids = list(token_ids) if token_ids is not None else (torch.topk(values, k).indices.tolist() if k else [])
        return {t: Logprob(float(values[t]), int((values > values[t]).sum()) + 1) for t in [token, *ids]}


@contextlib.contextmanager
def install(supports_logprob_token_ids: bool = True, version: str = __version__):
    "Put the stand-in modules into `sys.modules` inside the block (and what was there back after it)."
    names = ("vllm", "vllm.inputs", "vllm.lora", "vllm.lora.request", "vllm.logprobs", "vllm.sampling_params")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["vllm"].__version__ = version
    mods["vllm"].LLM = LLM
    sp = type("SamplingParams", (SamplingParams,), dict(
        SUPPORTS_LOGPROB_TOKEN_IDS=supports_logprob_token_ids,
        __struct_fields__=tuple(f for f in SamplingParams._FIELDS if supports_logprob_token_ids or f != "logprob_token_ids")))
    mods["vllm"].SamplingParams = mods["vllm.sampling_params"].SamplingParams = sp
    mods["vllm.inputs"].TokensPrompt = TokensPrompt
    mods["vllm.lora.request"].LoRARequest = LoRARequest
    mods["vllm.logprobs"].Logprob = Logprob
    mods["vllm"].inputs, mods["vllm"].lora, mods["vllm.lora"].request = mods["vllm.inputs"], mods["vllm.lora"], mods["vllm.lora.request"]
    sys.modules.update(mods)
    try: yield mods["vllm"]
    finally:
        for n, m in saved.items():
            if m is None: sys.modules.pop(n, None)
            else: sys.modules[n] = m
