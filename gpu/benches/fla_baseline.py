"""Time fla's chunk_gla forward (Triton) at the benchmark shapes, same protocol as glacheck bench
(median of do_bench; several input sets rotated). Usage: python3 fla_baseline.py B,T,H,K,V ..."""
import sys, torch
import triton
from fla.ops.gla import chunk_gla

def bench(shape, nbuf=3):
    B, T, H, K, V = shape
    dev = 'cuda'
    sets = []
    for s in range(nbuf):
        torch.manual_seed(s)
        q = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
        g = (torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device=dev)) / 16).to(torch.bfloat16)
        sets.append((q, k, v, g))
    i = [0]
    def fn():
        q, k, v, g = sets[i[0] % nbuf]
        i[0] += 1
        chunk_gla(q, k, v, g, output_final_state=True)
    ms = triton.testing.do_bench(fn, warmup=100, rep=500, return_mode='median')
    return ms

if __name__ == '__main__':
    shapes = [tuple(int(x) for x in a.split(',')) for a in sys.argv[1:]] or [(8, 4096, 16, 128, 128)]
    print(f"fla chunk_gla (triton {triton.__version__}, torch {torch.__version__}) on {torch.cuda.get_device_name()}")
    for s in shapes:
        B, T, H, K, V = s
        ms = bench(s)
        by = B * T * H * (2 * (2 * K + 2 * V) + 2 * K)  # q,k,v,o bf16 + g bf16
        print(f"fla {B},{T},{H},{K},{V}: median {ms:.3f} ms  {by / ms / 1e6:.0f} GB/s (bf16 g)")
