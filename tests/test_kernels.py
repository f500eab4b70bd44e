"""fused_mae / fused_js: forward and both input gradients against float64 formulas written here.

The Triton kernels run on CPU tensors in Triton's interpreter: the autouse fixture sets
TRITON_INTERPRET=1, which fastlrwa.kernels reads when a kernel is called (not at import), so these
tests work alone and in one pytest process with every other test. Shapes stay small: the
interpreter is about a thousand times slower than torch.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
import zlib

import pytest
import torch
import torch.nn.functional as F

from fastlrwa.errors import ConfigError
from fastlrwa.kernels import backend as kernel_backend
from fastlrwa.kernels import fused_js, fused_mae, js_reference, launch, mae_reference

requires_triton = pytest.mark.skipif(not kernel_backend.TRITON_AVAILABLE, reason="triton is not installed")

# Odd sizes, C not a power of two, the classification sizes 10/100/200/1000 (N tiny for the big
# C), a 1-D and a 3-D input.
SHAPES = [(1, 10), (3, 10), (17, 100), (33, 10), (5, 200), (2, 1000), (7,), (2, 3, 5)]
# Relative tolerance per input dtype; bf16/fp16 accumulate in fp32 but gradients are stored
# in the input dtype (8 and 11 mantissa bits).
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}
DTYPES = list(RTOL)


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _generator(*key: object) -> torch.Generator:
    """Fresh inputs per test case, reproducible across runs (``hash`` of a str is not)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _logits(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator, scale: float = 2.0) -> torch.Tensor:
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype).requires_grad_()


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Relative to the largest expected magnitude: gradients hold many near-zero entries."""
    scale = expected.abs().max().item()
    assert scale > 0, "the reference is all zero: the check could not fail"
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=rtol * scale)


def _value_and_grads(loss_fn, a: torch.Tensor, b: torch.Tensor, upstream: float):
    loss = loss_fn(a, b)
    grad_a, grad_b = torch.autograd.grad(
        loss, (a, b), grad_outputs=torch.tensor(upstream, dtype=loss.dtype, device=loss.device)
    )
    return loss, grad_a, grad_b


def _float64_copies(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs as the kernel sees them (already rounded to their dtype), in float64."""
    return a.detach().double().requires_grad_(), b.detach().double().requires_grad_()


def mae_float64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().sum() / a.numel()


def js_paper_float64(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    p, q = torch.softmax(a / temperature, dim=-1), torch.softmax(b / temperature, dim=-1)
    m = (p + q) / 2
    per_row = 0.5 * (p * torch.log(p / m)).sum(-1) + 0.5 * (q * torch.log(q / m)).sum(-1)
    return per_row.mean()


def js_official_float64(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The authors' code, literally (KLDivLoss with its default element mean)."""
    p, q = F.softmax(a / temperature, dim=-1), F.softmax(b / temperature, dim=-1)
    m = 0.5 * (p + q)
    p, q, m = torch.clamp(p, 0.01, 0.99), torch.clamp(q, 0.01, 0.99), torch.clamp(m, 0.01, 0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return 0.5 * F.kl_div(torch.log(p), m, reduction="mean") + 0.5 * F.kl_div(torch.log(q), m, reduction="mean")


JS_FLOAT64 = {"paper": js_paper_float64, "official": js_official_float64}


def _rows_clear_of_clamp_bounds(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows where no P, Q or M lies within 1e-5 of 0.01 or 0.99.

    The clamp's gradient jumps at its bounds, so an entry that close can land on the other side
    in fp32 than in float64; through the softmax Jacobian that moves its whole row's gradient.
    """
    p, q = torch.softmax(a / temperature, dim=-1), torch.softmax(b / temperature, dim=-1)
    near = torch.zeros_like(p, dtype=torch.bool)
    for probability in (p, q, (p + q) / 2):
        near |= ((probability - 0.01).abs() < 1e-5 * 0.01) | ((probability - 0.99).abs() < 1e-5)
    return ~near.any(dim=-1)


def _official_scale(shape: tuple[int, ...]) -> float:
    """Logit spread for which some softmax entries leave [0.01, 0.99], so the clamped form has gradient."""
    return 2.0 if shape[-1] <= 100 else 6.0


@requires_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mae_triton_matches_float64(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    generator = _generator("mae", shape, dtype)
    a, b = _logits(shape, dtype, generator), _logits(shape, dtype, generator)
    upstream = -1.7
    loss, grad_a, grad_b = _value_and_grads(lambda x, y: fused_mae(x, y, backend="triton"), a, b, upstream)
    a64, b64 = _float64_copies(a, b)
    expected, expected_a, expected_b = _value_and_grads(mae_float64, a64, b64, upstream)
    assert loss.dtype == dtype and grad_a.dtype == dtype and grad_b.dtype == dtype
    _assert_close(loss, expected, RTOL[dtype])
    _assert_close(grad_a, expected_a, RTOL[dtype])
    _assert_close(grad_b, expected_b, RTOL[dtype])


@requires_triton
def test_mae_gradient_is_zero_where_logits_tie() -> None:
    generator = _generator("mae ties")
    a = torch.randn(6, 11, generator=generator)
    b = a.clone()
    b[::2] += torch.randn(3, 11, generator=generator)
    a.requires_grad_()
    grad = torch.autograd.grad(fused_mae(a, b, backend="triton"), a)[0]
    expected = torch.autograd.grad(F.l1_loss(a, b), a)[0]
    assert (grad[1::2] == 0).all()
    torch.testing.assert_close(grad, expected)


@requires_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_js_triton_matches_float64(variant: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    generator = _generator("js", variant, shape, dtype)
    scale = _official_scale(shape) if variant == "official" else 2.0
    a, b = _logits(shape, dtype, generator, scale), _logits(shape, dtype, generator, scale)
    temperature = 3.0 if variant == "official" else 1.0
    # fp16 gradients of the clamped form are ~1e-7, below fp16's normal range: scale the upstream
    # gradient as a GradScaler would.
    upstream = 0.6 * (1024.0 if dtype == torch.float16 else 1.0)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fused_js(x, y, temperature=temperature, variant=variant, backend="triton")

    loss, grad_a, grad_b = _value_and_grads(kernel, a, b, upstream)
    a64, b64 = _float64_copies(a, b)
    expected, expected_a, expected_b = _value_and_grads(
        lambda x, y: JS_FLOAT64[variant](x, y, temperature), a64, b64, upstream
    )
    assert loss.dtype == dtype and grad_a.dtype == dtype and grad_b.dtype == dtype
    _assert_close(loss, expected, RTOL[dtype])
    rows = torch.ones(a.shape[:-1], dtype=torch.bool)
    if variant == "official" and dtype != torch.float64:
        rows = _rows_clear_of_clamp_bounds(a64.detach(), b64.detach(), temperature)
    _assert_close(grad_a[rows], expected_a[rows], RTOL[dtype])
    _assert_close(grad_b[rows], expected_b[rows], RTOL[dtype])


@requires_triton
@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_js_temperature(variant: str, temperature: float) -> None:
    generator = _generator("js temperature", variant, temperature)
    a, b = _logits((9, 13), torch.float64, generator), _logits((9, 13), torch.float64, generator)
    loss, grad_a, grad_b = _value_and_grads(
        lambda x, y: fused_js(x, y, temperature=temperature, variant=variant, backend="triton"), a, b, 1.3
    )
    expected, expected_a, expected_b = _value_and_grads(
        lambda x, y: JS_FLOAT64[variant](x, y, temperature), *_float64_copies(a, b), 1.3
    )
    _assert_close(loss, expected, 1e-10)
    _assert_close(grad_a, expected_a, 1e-10)
    _assert_close(grad_b, expected_b, 1e-10)


@requires_triton
@pytest.mark.parametrize("loss_name", ["mae", "paper", "official"])
def test_rows_longer_than_one_tile(monkeypatch: pytest.MonkeyPatch, loss_name: str) -> None:
    """Rows wider than the largest column block take the chunked path (online softmax for JS)."""
    monkeypatch.setattr(launch, "MAX_BLOCK_COLS", 16)
    generator = _generator("chunked", loss_name)
    a, b = _logits((5, 37), torch.float64, generator), _logits((5, 37), torch.float64, generator)
    if loss_name == "mae":
        kernel, reference = (lambda x, y: fused_mae(x, y, backend="triton")), mae_float64
    else:
        kernel = lambda x, y: fused_js(x, y, temperature=0.7, variant=loss_name, backend="triton")  # noqa: E731
        reference = lambda x, y: JS_FLOAT64[loss_name](x, y, 0.7)  # noqa: E731
    loss, grad_a, grad_b = _value_and_grads(kernel, a, b, 2.0)
    expected, expected_a, expected_b = _value_and_grads(reference, *_float64_copies(a, b), 2.0)
    _assert_close(loss, expected, 1e-10)
    _assert_close(grad_a, expected_a, 1e-10)
    _assert_close(grad_b, expected_b, 1e-10)


@requires_triton
@pytest.mark.parametrize("loss_name", ["mae", "js"])
def test_strided_inputs_and_one_sided_gradient(loss_name: str) -> None:
    """Logits sliced out of a wider tensor (row stride != C); the teacher side detached."""
    generator = _generator("strided", loss_name)
    wide = torch.randn(7, 24, generator=generator, dtype=torch.float64)
    student = wide[:, 3:13].clone().requires_grad_()
    teacher_storage = torch.randn(7, 24, generator=generator, dtype=torch.float64)
    teacher = teacher_storage[:, 5:15]
    assert teacher.stride(0) != teacher.shape[1]
    if loss_name == "mae":
        loss = fused_mae(student, teacher, backend="triton")
        expected = mae_float64(student, teacher.contiguous())
    else:
        loss = fused_js(student, teacher, backend="triton")
        expected = js_paper_float64(student, teacher.contiguous(), 1.0)
    _assert_close(loss, expected, 1e-10)
    _assert_close(torch.autograd.grad(loss, student)[0], torch.autograd.grad(expected, student)[0], 1e-10)


BACKENDS = ["torch", pytest.param("triton", marks=requires_triton)]
JVP_SHAPES = [(1, 10), (5, 7), (17, 100), (2, 3, 5), (11,)]
JVP_TEMPERATURE = 1.5


def _loss_and_formula(loss_name: str, backend: str):
    """The fused loss on ``backend`` and its float64 formula, for ``mae``, ``paper`` or ``official``."""
    if loss_name == "mae":
        return (lambda x, y: fused_mae(x, y, backend=backend)), mae_float64

    def fused(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fused_js(x, y, temperature=JVP_TEMPERATURE, variant=loss_name, backend=backend)

    return fused, (lambda x, y: JS_FLOAT64[loss_name](x, y, JVP_TEMPERATURE))


def _tangents(loss_name: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator, a, b):
    """Random tangents; for the clamped form in low precision, zero on rows whose clamp could flip."""
    tangent_a = torch.randn(shape, generator=generator, dtype=torch.float64)
    tangent_b = torch.randn(shape, generator=generator, dtype=torch.float64)
    if loss_name == "official" and dtype != torch.float64:
        rows = _rows_clear_of_clamp_bounds(*(x.detach().double() for x in (a, b)), JVP_TEMPERATURE)
        tangent_a, tangent_b = tangent_a * rows[..., None], tangent_b * rows[..., None]
    return tangent_a.to(dtype), tangent_b.to(dtype)


def _expected_jvp(formula, a: torch.Tensor, b: torch.Tensor, tangents) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The formula's value and ⟨∇f, t⟩ by float64 autograd, and Σ|∇f||t| (the scale rounding acts on)."""
    a64, b64 = _float64_copies(a, b)
    value = formula(a64, b64)
    grads = torch.autograd.grad(value, (a64, b64))
    tangents64 = [t.double() if t is not None else torch.zeros_like(a64) for t in tangents]
    dot = sum((g * t).sum() for g, t in zip(grads, tangents64))
    magnitude = sum((g.abs() * t.abs()).sum() for g, t in zip(grads, tangents64)).item()
    return value.detach(), dot.detach(), magnitude


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", JVP_SHAPES)
@pytest.mark.parametrize("loss_name", ["mae", "paper", "official"])
def test_jvp_matches_float64(loss_name: str, shape: tuple[int, ...], dtype: torch.dtype, backend: str) -> None:
    """``torch.func.jvp`` with tangents on both logits and on the student's alone, against ⟨∇f, t⟩ in float64."""
    generator = _generator("jvp", loss_name, shape, dtype, backend)
    scale = _official_scale(shape) if loss_name == "official" else 2.0
    a, b = (_logits(shape, dtype, generator, scale).detach() for _ in range(2))
    tangent_a, tangent_b = _tangents(loss_name, shape, dtype, generator, a, b)
    fused, formula = _loss_and_formula(loss_name, backend)
    for tangents in ((tangent_a, tangent_b), (tangent_a, None)):
        if tangents[1] is None:
            value, tangent = torch.func.jvp(lambda x: fused(x, b), (a,), (tangent_a,))
        else:
            value, tangent = torch.func.jvp(fused, (a, b), tangents)
        expected_value, expected_tangent, magnitude = _expected_jvp(formula, a, b, tangents)
        assert magnitude > 0, "the reference tangent has no terms: the check could not fail"
        assert tangent.dtype == dtype
        _assert_close(value, expected_value, RTOL[dtype])
        torch.testing.assert_close(tangent.double(), expected_tangent, rtol=0.0, atol=RTOL[dtype] * magnitude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss_name", ["mae", "paper", "official"])
def test_jvp_under_compile_matches_float64(loss_name: str, backend: str) -> None:
    """torch.compile(fullgraph) of a jvp through the loss: no graph break, whatever the backend asked for.

    Dynamo refuses a custom ``jvp``, so while compiling the losses run as the torch expression.
    """
    torch._dynamo.reset()
    generator = _generator("compiled jvp", loss_name, backend)
    a, b = (_logits((7, 13), torch.float64, generator, 3.0).detach() for _ in range(2))
    tangents = tuple(torch.randn(7, 13, generator=generator, dtype=torch.float64) for _ in range(2))
    fused, formula = _loss_and_formula(loss_name, backend)
    compiled = torch.compile(
        lambda *args: torch.func.jvp(fused, args[:2], args[2:]), fullgraph=True, backend="aot_eager"
    )
    value, tangent = compiled(a, b, *tangents)
    expected_value, expected_tangent, magnitude = _expected_jvp(formula, a, b, tangents)
    _assert_close(value, expected_value, 1e-10)
    torch.testing.assert_close(tangent, expected_tangent, rtol=0.0, atol=1e-10 * magnitude)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_js_reference_matches_float64(variant: str) -> None:
    generator = _generator("js reference", variant)
    a, b = _logits((11, 100), torch.float32, generator, 4.0), _logits((11, 100), torch.float32, generator, 4.0)
    loss, grad_a, grad_b = _value_and_grads(
        lambda x, y: js_reference(x, y, temperature=3.0, variant=variant), a, b, 1.0
    )
    expected, expected_a, expected_b = _value_and_grads(
        lambda x, y: JS_FLOAT64[variant](x, y, 3.0), *_float64_copies(a, b), 1.0
    )
    _assert_close(loss, expected, 1e-5)
    _assert_close(grad_a, expected_a, 1e-5)
    _assert_close(grad_b, expected_b, 1e-5)


def test_js_reference_keeps_bf16_accuracy() -> None:
    """The reference upcasts: on bf16 logits it agrees with float64 on the same rounded values."""
    generator = _generator("js reference bf16")
    a, b = _logits((8, 10), torch.bfloat16, generator), _logits((8, 10), torch.bfloat16, generator)
    loss = js_reference(a, b)
    assert loss.dtype == torch.bfloat16
    _assert_close(loss, js_paper_float64(*_float64_copies(a, b), 1.0), 1e-2)


def test_auto_backend_on_cpu_is_the_reference() -> None:
    generator = _generator("auto")
    a, b = torch.randn(4, 10, generator=generator), torch.randn(4, 10, generator=generator)
    assert torch.equal(fused_mae(a, b), mae_reference(a, b))
    assert torch.equal(fused_mae(a, b, backend="torch"), F.l1_loss(a, b))
    official = js_reference(a, b, temperature=3.0, variant="official")
    assert torch.equal(fused_js(a, b, variant="official", temperature=3.0), official)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET")
    a = torch.randn(2, 10)
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
        fused_mae(a, a + 1, backend="triton")


def test_triton_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_backend, "TRITON_AVAILABLE", False)
    a = torch.randn(2, 10)
    with pytest.raises(ConfigError, match="triton package"):
        fused_js(a, a + 1, backend="triton")
    assert torch.equal(fused_js(a, a + 1, backend="auto"), js_reference(a, a + 1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: fused_mae(a, a, backend="cuda"), "unknown kernel backend"),
        (lambda a: fused_mae(a, a[:, :5]), "same shape"),
        (lambda a: fused_mae(a.long(), a.long()), "floating point"),
        (lambda a: fused_mae(a[:0], a[:0]), "empty"),
        (lambda a: fused_js(a, a, variant="batchmean"), "unknown variant"),
        (lambda a: fused_js(a, a, temperature=0.0), "temperature"),
        (lambda a: fused_js(a, a, temperature=float("nan")), "temperature"),
        (lambda a: fused_js(a[0, 0], a[0, 1]), "class dimension"),
    ],
)
def test_bad_input_is_one_config_error(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(torch.randn(3, 10))


def test_importing_kernels_does_not_import_triton() -> None:
    script = "import sys, fastlrwa.kernels; sys.exit(int('triton' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 0


@requires_triton
def test_interpreter_works_after_triton_was_imported_for_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a full test run: triton (and its @jit standard library) imported before the variable is set."""
    script = "\n".join(
        [
            "import os, torch, triton.language",
            "os.environ['TRITON_INTERPRET'] = '1'",
            "from fastlrwa.kernels import fused_js, fused_mae, js_reference",
            "a, b = torch.randn(5, 12, dtype=torch.float64), torch.randn(5, 12, dtype=torch.float64)",
            "assert abs(fused_mae(a, b, backend='triton') - (a - b).abs().mean()) < 1e-12",
            "for variant in ('paper', 'official'):",
            "    js = fused_js(a, b, variant=variant, backend='triton')",
            "    assert abs(js - js_reference(a, b, variant=variant)) < 1e-12",
        ]
    )
    monkeypatch.delenv("TRITON_INTERPRET")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]


@requires_triton
def test_compiled_and_interpreted_kernels_coexist(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRITON_INTERPRET is honoured per launch: both kernel flavours live in one process, each calling its
    helpers in its own flavour."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    from fastlrwa.kernels import mae

    interpreted = mae._forward_kernel.in_mode(kernel_backend.interpreter_requested())
    monkeypatch.delenv("TRITON_INTERPRET")
    compiled = mae._forward_kernel.in_mode(kernel_backend.interpreter_requested())
    assert isinstance(interpreted, InterpretedFunction) and isinstance(compiled, JITFunction)
    assert isinstance(interpreted.fn.__globals__["row_sum"], InterpretedFunction)
    assert isinstance(compiled.fn.__globals__["row_sum"], JITFunction)
    assert compiled.fn.__globals__["TILE_ELEMENTS"].value == mae.TILE_ELEMENTS
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert mae._forward_kernel.in_mode(kernel_backend.interpreter_requested()) is interpreted


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# Large reductions on the GPU sum in another order than float64 on the CPU: a looser float32 bound.
CUDA_RTOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 1e-2}


@pytest.mark.gpu
@requires_cuda
@requires_triton
@pytest.mark.parametrize("dtype", list(CUDA_RTOL))
@pytest.mark.parametrize("shape", [(4099, 100), (513, 1000), (37, 10), (3, 5, 200), (576, 100)])
@pytest.mark.parametrize("loss_name", ["mae", "paper", "official"])
def test_gpu_kernels_match_float64(
    monkeypatch: pytest.MonkeyPatch, loss_name: str, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    """The kernels compiled for the GPU (not the interpreter) at the trainer's sizes (512 + 64 rows, C = 100)
    and odd ones, through ``backend="auto"`` as the losses call them."""
    monkeypatch.delenv("TRITON_INTERPRET")
    generator = _generator("cuda", loss_name, shape, dtype)
    scale = _official_scale(shape) if loss_name == "official" else 2.0
    a, b = (_logits(shape, dtype, generator, scale).detach().cuda().requires_grad_() for _ in range(2))
    temperature = {"mae": 1.0, "paper": 1.0, "official": 3.0}[loss_name]
    upstream = 0.6 * (1024.0 if dtype == torch.float16 and loss_name != "mae" else 1.0)
    if loss_name == "mae":
        kernel, reference = fused_mae, mae_float64
    else:
        kernel = lambda x, y: fused_js(x, y, temperature=temperature, variant=loss_name)  # noqa: E731
        reference = lambda x, y: JS_FLOAT64[loss_name](x, y, temperature)  # noqa: E731
    loss, grad_a, grad_b = _value_and_grads(kernel, a, b, upstream)
    assert grad_a.is_cuda and grad_b.is_cuda and loss.dtype == grad_a.dtype == dtype
    expected, expected_a, expected_b = _value_and_grads(reference, *_float64_copies(a, b), upstream)
    _assert_close(loss, expected, CUDA_RTOL[dtype])
    rows = torch.ones(a.shape[:-1], dtype=torch.bool, device="cuda")
    if loss_name == "official":
        rows = _rows_clear_of_clamp_bounds(*(t.detach().double() for t in (a, b)), temperature)
    _assert_close(grad_a[rows], expected_a[rows], CUDA_RTOL[dtype])
    _assert_close(grad_b[rows], expected_b[rows], CUDA_RTOL[dtype])
