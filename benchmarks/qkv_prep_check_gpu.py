"""Where the prep op's GPU test disagreed with the plain path (session 18, call 2), and whether a model with the op
learns as the plain one on the GPU.

1. λ's gradient at the GPU test's shape: the prep op and the plain path (eager, compiled) against float64.
2. The op traced by ``torch.compile(backend="aot_eager")`` (the CPU test that failed under PyTorch 2.11), on the
   CPU and on the GPU: each part's error (Q, K, V thirds of ∂qkv, ∂embedding, ∂λ), with and without a value
   embedding.
3. A 4-layer model of `seed`'s width (Flex attention, bf16 autocast, compiled) with and without the op: the loss and
   each parameter's gradient, the worst relative differences, beside the same model's two plain runs.

Usage (device, repo root): PYTHONPATH=src python benchmarks/qkv_prep_check_gpu.py
"""
import torch

from cavegpt.model.gpt import GPT, ModelConfig, Rotary, prepare_plain
from cavegpt.model.qkv_prep import prepare_qkv


def plain(qkv, rotary, value_embed, lamb):
    return tuple(t.bfloat16() for t in prepare_plain(*qkv.split(qkv.size(2) // 3, dim=2), rotary, value_embed, lamb))


def lamb_against_float64() -> None:
    generator = torch.Generator(device="cuda").manual_seed(4)
    qkv = (torch.randn(1, 4096, 18, 128, device="cuda", generator=generator) * 3).bfloat16().requires_grad_()
    embed = torch.randn(1, 4096, 768, device="cuda", generator=generator).requires_grad_()
    lamb = torch.tensor(0.3, device="cuda", requires_grad=True)
    grads = [torch.randn(1, 4096, 6, 128, device="cuda", generator=generator).bfloat16() for _ in range(3)]
    rotary = Rotary(128, 8192).cuda()
    v = qkv.detach()[:, :, 12:].double()
    exact = (grads[2].double() * (embed.detach().double().view_as(v) - v)).sum().item()
    terms = (grads[2].double() * (embed.detach().double().view_as(v) - v)).abs().sum().item()
    print(f"1. dλ in float64: {exact:.4f} (Σ|terms| {terms:.0f})")
    paths = {
        "prep op, eager": lambda: prepare_qkv(qkv, rotary.cos, rotary.sin, embed, lamb),
        "prep op, compiled": torch.compile(lambda: prepare_qkv(qkv, rotary.cos, rotary.sin, embed, lamb)),
        "plain, eager": lambda: plain(qkv, rotary, embed, lamb),
        "plain, compiled": torch.compile(lambda: plain(qkv, rotary, embed, lamb)),
    }
    for name, run in paths.items():
        got = torch.autograd.grad(run(), [lamb], grads)[0].item()
        print(f"   {name:<20} {got:12.4f}  error {got - exact:+.4f}")


def parts_under_aot_eager(device: str) -> None:
    generator = torch.Generator(device=device).manual_seed(1)
    heads, D = 3, 16
    qkv = (torch.randn(2, 7, 3 * heads, D, device=device, generator=generator) * 3).requires_grad_()
    embed = torch.randn(2, 7, heads * D, device=device, generator=generator).requires_grad_()
    lamb = torch.tensor(0.3, device=device, requires_grad=True)
    grads = [torch.randn(2, 7, heads, D, device=device, generator=generator) for _ in range(3)]
    rotary = Rotary(D, 32).to(device)
    compiled = torch.compile(prepare_qkv, fullgraph=True, backend="aot_eager")
    for value_embed, mix in ((embed, lamb), (None, None)):
        leaves = [t for t in (qkv, value_embed, mix) if t is not None]
        torch._dynamo.reset()
        got = torch.autograd.grad(compiled(qkv, rotary.cos, rotary.sin, value_embed, mix), leaves, grads)
        expected = torch.autograd.grad(prepare_qkv(qkv, rotary.cos, rotary.sin, value_embed, mix), leaves, grads)
        parts = dict(zip("QKV", zip(got[0].chunk(3, dim=2), expected[0].chunk(3, dim=2))))
        parts.update(zip(("embed", "lamb"), zip(got[1:], expected[1:])))
        line = ", ".join(f"{n} {((g - e).norm() / e.norm()).item():.2e} (×{(g.norm() / e.norm()).item():.2f})"
                         for n, (g, e) in parts.items())
        print(f"2. aot_eager on {device}, {'with' if mix is not None else 'no'} value embedding: {line}")


def model_with_and_without(device: str = "cuda", attention: str = "flex", T: int = 4096) -> None:
    config = dict(n_layer=4, n_value_embeds=1, backout_layer=2, max_seq_len=8192, attention=attention)
    tokens = torch.randint(0, 50304, (1, T + 1), device=device, generator=torch.Generator(device=device).manual_seed(0))
    window = torch.tensor(1792, device=device)
    torch.manual_seed(0)
    reference = GPT(ModelConfig(**config)).to(device)
    for zero_at_init in (reference.lm_head.weight, *(b.attn.c_proj.weight for b in reference.blocks)):
        torch.nn.init.normal_(zero_at_init, std=0.02)  # so that gradients reach Q, K and V
    runs = {}
    for name, fused in (("plain", False), ("plain again", False), ("prep op", True)):
        torch._dynamo.reset()
        model = GPT(ModelConfig(**config, fused_qkv_prep=fused)).to(device)
        model.load_state_dict(reference.state_dict())
        step = torch.compile(model)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = step(tokens[:, :-1], window, tokens[:, 1:])
        loss.backward()
        runs[name] = (loss.item(), {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None})
    loss0, grads0 = runs["plain"]
    for name in ("plain again", "prep op"):
        loss, grads = runs[name]
        errors = sorted((((grads[n] - g).norm() / g.norm().clamp_min(1e-30)).item(), n) for n, g in grads0.items())
        errors.reverse()
        worst = ", ".join(f"{n} {e:.1e}" for e, n in errors[:4])
        print(f"3. {name} vs plain: loss {loss:.6f} vs {loss0:.6f}; worst gradients: {worst}")


if __name__ == "__main__":
    lamb_against_float64()
    for device in ("cpu", "cuda"):
        parts_under_aot_eager(device)
    model_with_and_without()
