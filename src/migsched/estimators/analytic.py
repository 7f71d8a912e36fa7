"""Analytic (DNNMem-spirit) memory estimate for jobs that describe themselves.

paper.md §3.2 gives "traditional" ML jobs an offline analytic estimate (DNNMem, Gao et al. 2020)
that sets the initial slice. DNNMem walks the computation graph; a scheduler only has the job's
`describe:` block, so this module keeps the same *layers* with coarser terms:

* training:  weights + gradients + optimizer state (+ fp32 master weights under mixed precision)
             + activations + CUDA context;
* inference: weights + activations + CUDA context;
* LLM:       weights + KV cache (grows with generated tokens) + CUDA context.

Everything is *allocated* memory plus a context overhead, never the allocator's *reserved*
memory: calibration.md §1.3/§2 shows reserved memory inflating to whatever the slice offers
(a QLoRA run peaked at 5.68 GB allocated on every slice, while reserved was 8.97/18.30/23.55 GB
on 1g/2g/3g). The activation terms are guesses and are marked as such below.
"""

from __future__ import annotations

from dataclasses import dataclass

from migsched.jobs.model import Describe, JobClass, JobSpec

BYTES_PER_MIB = 1024.0 * 1024.0

# Bytes per element of each dtype name a job file may use.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0, "float32": 4.0, "tf32": 4.0,
    "fp16": 2.0, "float16": 2.0, "half": 2.0, "bf16": 2.0, "bfloat16": 2.0,
    "fp8": 1.0, "int8": 1.0,
    "int4": 0.5, "nf4": 0.5, "fp4": 0.5,
}
MIXED_PRECISION = frozenset({"fp16", "float16", "half", "bf16", "bfloat16", "fp8"})

# fp32 optimizer-state tensors per parameter (Adam keeps first and second moments).
OPTIMIZER_STATES: dict[str, int] = {
    "none": 0, "sgd": 0, "momentum": 1, "sgd-momentum": 1, "nesterov": 1, "rmsprop": 1,
    "adagrad": 1, "adam": 2, "adamw": 2, "lamb": 2,
}

# CUDA context + cuBLAS/cuDNN handles and workspaces, per process. Typically 0.3-1 GiB depending
# on driver, GPU and libraries loaded (paper.md §3.3 "CUDA context and miscellaneous").
CUDA_CONTEXT_MIB = 768.0

# GUESS: activations kept for backward, per sample, as a multiple of the weight bytes. Fits
# ResNet-50 at 224 px (~100 MB weights, ~100 MB/sample) and is low for long-sequence transformers
# (MISO BERT-base: ~2 GB/sample, calibration.md §2). Replace with DNNMem-style graph analysis when
# jobs can ship a graph.
TRAIN_ACTIVATION_PER_SAMPLE = 1.0
# GUESS: inference keeps only the live layer's activations: a tenth of the training figure.
INFER_ACTIVATION_PER_SAMPLE = 0.1
# Weights assumed for a description without a dtype (frameworks default to fp32; LLMs ship fp16).
DEFAULT_DTYPE = {JobClass.LLM: "fp16"}
FALLBACK_DTYPE = "fp32"


@dataclass(frozen=True, slots=True)
class AnalyticEstimate:
    """An analytic estimate and its parts (all MiB).

    Attributes:
        peak_mib: the estimated peak (the sum of the parts).
        initial_mib: what the job holds right after loading (weights + context); for LLMs the KV
            cache then grows from here.
        growing: True when memory is expected to grow during the run (LLM KV cache).
        parts: (name, MiB) pairs that make up `peak_mib`, for reports and docs.
    """

    peak_mib: float
    initial_mib: float
    growing: bool
    parts: tuple[tuple[str, float], ...]

    @property
    def certain_mib(self) -> float:
        """The parts the description pins down (weights, gradients, optimizer state, KV cache,
        context): all but those marked "(guess)", the activation terms."""
        return sum(v for name, v in self.parts if not name.endswith("(guess)"))


def dtype_bytes(dtype: str | None, job_class: JobClass) -> float | None:
    """Bytes per element of `dtype` (the class default when None); None for an unknown name."""
    name = (dtype or DEFAULT_DTYPE.get(job_class, FALLBACK_DTYPE)).lower()
    return DTYPE_BYTES.get(name)


class AnalyticEstimator:
    """Estimates peak memory from a job's `describe:` block; None when it says too little."""

    def __init__(self, context_mib: float = CUDA_CONTEXT_MIB) -> None:
        self.context_mib = context_mib

    def estimate(self, spec: JobSpec) -> AnalyticEstimate | None:
        """The analytic estimate for `spec`, or None (no params, unknown dtype/optimizer, or an
        LLM without its KV-cache shape)."""
        d = spec.describe
        if d.params_m is None or d.params_m <= 0:
            return None
        b = dtype_bytes(d.dtype, spec.job_class)
        if b is None:
            return None
        weights = d.params_m * 1e6 * b / BYTES_PER_MIB
        if spec.job_class is JobClass.LLM:
            return self._llm(d, b, weights)
        if spec.job_class is JobClass.ML_TRAIN or (d.optimizer and d.optimizer.lower() != "none"):
            return self._train(d, b, weights)
        return self._infer(d, weights)

    def initial_mib(self, spec: JobSpec) -> float | None:
        """Weights + context: what the job uses once loaded, before any growth."""
        est = self.estimate(spec)
        if est is not None:
            return est.initial_mib
        d = spec.describe
        b = dtype_bytes(d.dtype, spec.job_class)
        if d.params_m is None or d.params_m <= 0 or b is None:
            return None
        return d.params_m * 1e6 * b / BYTES_PER_MIB + self.context_mib

    def _train(self, d: Describe, b: float, weights: float) -> AnalyticEstimate | None:
        states = OPTIMIZER_STATES.get((d.optimizer or "sgd").lower())
        if states is None:
            return None
        fp32_params = d.params_m * 1e6 * 4.0 / BYTES_PER_MIB  # type: ignore[operator]
        grads = weights  # gradients in the weights' dtype
        optimizer = states * fp32_params
        master = fp32_params if (d.dtype or "").lower() in MIXED_PRECISION else 0.0
        batch = d.batch_size or 1
        activations = TRAIN_ACTIVATION_PER_SAMPLE * weights * batch
        parts = (
            ("weights", weights), ("gradients", grads), ("optimizer", optimizer),
            ("master-weights", master), ("activations (guess)", activations),
            ("cuda-context", self.context_mib),
        )
        return _sum(parts, initial=weights + self.context_mib, growing=False)

    def _infer(self, d: Describe, weights: float) -> AnalyticEstimate:
        activations = INFER_ACTIVATION_PER_SAMPLE * weights * (d.batch_size or 1)
        parts = (
            ("weights", weights), ("activations (guess)", activations),
            ("cuda-context", self.context_mib),
        )
        return _sum(parts, initial=weights + self.context_mib, growing=False)

    def _llm(self, d: Describe, b: float, weights: float) -> AnalyticEstimate | None:
        if None in (d.layers, d.kv_heads, d.head_dim, d.context_tokens):
            return None
        kv_b = max(b, 2.0)  # quantized weights still keep a 16-bit KV cache
        tokens = d.context_tokens + (d.generated_tokens or 0)  # type: ignore[operator]
        kv = 2.0 * d.layers * d.kv_heads * d.head_dim * kv_b * (d.batch_size or 1) * tokens  # type: ignore[operator]
        parts = (
            ("weights", weights), ("kv-cache", kv / BYTES_PER_MIB),
            ("cuda-context", self.context_mib),
        )
        return _sum(parts, initial=weights + self.context_mib, growing=True)


def _sum(parts: tuple[tuple[str, float], ...], initial: float, growing: bool) -> AnalyticEstimate:
    return AnalyticEstimate(
        peak_mib=sum(v for _, v in parts), initial_mib=initial, growing=growing, parts=parts
    )
