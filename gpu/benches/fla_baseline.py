"""Time fla's chunk_gla (Triton) at the benchmark shapes, same protocol as glacheck bench
(median of do_bench; several input sets rotated).

Usage: python3 fla_baseline.py [--mode fwd|fwdbwd|both] B,T,H,K,V ...

Time fla in a fresh process with the benchmark shapes only: fla 0.6 caches its autotune choices on
disk under keys without B or T, so a warm-up with small shapes can leave the large shapes with a
configuration tuned for the small ones."""
import sys, torch
import triton
from fla.ops.gla import chunk_gla


def make_sets(shape, nbuf, grad):
    B, T, H, K, V = shape
    dev = 'cuda'
    sets = []
    for s in range(nbuf):
        torch.manual_seed(s)
        q = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16, requires_grad=grad)
        k = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16, requires_grad=grad)
        v = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16, requires_grad=grad)
        g = (torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device=dev)) / 16).to(torch.bfloat16)
        g.requires_grad_(grad)
        do = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
        sets.append((q, k, v, g, do))
    return sets


def bench(shape, mode, nbuf=3):
    grad = mode == 'fwdbwd'
    sets = make_sets(shape, nbuf, grad)
    i = [0]

    def fn():
        q, k, v, g, do = sets[i[0] % nbuf]
        i[0] += 1
        if grad:
            o, _ = chunk_gla(q, k, v, g, output_final_state=False)
            o.backward(do)
        else:
            with torch.no_grad():
                chunk_gla(q, k, v, g, output_final_state=True)

    grad_to_none = [t for s in sets for t in s[:4]] if grad else None
    return triton.testing.do_bench(fn, warmup=100, rep=500, return_mode='median', grad_to_none=grad_to_none)


if __name__ == '__main__':
    args = sys.argv[1:]
    mode = 'fwd'
    if args[:1] == ['--mode']:
        mode, args = args[1], args[2:]
    modes = ['fwd', 'fwdbwd'] if mode == 'both' else [mode]
    shapes = [tuple(int(x) for x in a.split(',')) for a in args] or [(8, 4096, 16, 128, 128)]
    print(f"fla chunk_gla (triton {triton.__version__}, torch {torch.__version__}) on {torch.cuda.get_device_name()}")
    for s in shapes:
        B, T, H, K, V = s
        for m in modes:
            ms = bench(s, m)
            by = B * T * H * (2 * (2 * K + 2 * V) + 2 * K)  # q,k,v,o bf16 + g bf16
            extra = f"  {by / ms / 1e6:.0f} GB/s (bf16 g)" if m == 'fwd' else ""
            print(f"fla {m} {B},{T},{H},{K},{V}: median {ms:.3f} ms{extra}", flush=True)
