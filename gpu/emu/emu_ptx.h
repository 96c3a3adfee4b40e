// CPU emulation of what the glacheck kernels need from CUDA: the language's qualifiers and
// built-ins, a block of threads run as cooperative fibers (one OS thread, a fiber per CUDA
// thread, __syncthreads and the warp-wide operations as barriers between them), and the PTX
// primitives of gpu/kernels/gla_common.cuh (which includes this file when GLA_EMU is defined).
//
// What it is for: running a kernel's logic (indexing, tiling, which warp computes what, the order
// of every accumulation) on a machine without a GPU, to compare two versions of a kernel bit for
// bit or one against an f64 reference (gpu/emu/kernels_check.cpp). Plain C++17: any host
// compiler. What it is not: a timing model, a race detector (cp.async copies complete at once, so a read before its wait is not caught; the
// GPU's compute-sanitizer is the check for that), or the tensor cores' exact rounding (an
// emulated mma.sync adds its 16 exact products and the accumulator in f64 and rounds once; two
// kernel versions that issue the same products in the same order still agree bit for bit).
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <vector>

// ---------------------------------------------------------------- qualifiers and built-in types
typedef unsigned short u16;  // as in gla_common.cuh (a repeated identical typedef is allowed)
typedef unsigned int u32;
#define __device__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n)
#define __shared__

struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct EmuDim3 { unsigned x = 0, y = 0, z = 0; };

inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __frcp_rn(float x) { return 1.0f / x; }
template <class T> inline T min(T a, T b) { return b < a ? b : a; }
template <class T> inline T max(T a, T b) { return a < b ? b : a; }
inline void __threadfence() {}

// ---------------------------------------------------------------- the fiber runtime
// One block at a time: a fiber per thread, run round-robin until each blocks at a barrier (block
// or warp) or returns; a barrier opens when every live thread of its block or warp waits at it.
namespace emu {
enum State { RUN, AT_BLOCK, AT_WARP, DONE };
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  unsigned tid = 0;
  State state = RUN;
};
// Exchange slots of the warp-wide operations: each lane writes its operands, all wait, each reads.
struct Lane { uint64_t w[12]; };
struct Rt {
  std::vector<Fiber> fibers;
  std::vector<Lane> lanes;  // [thread]
  ucontext_t sched;
  int cur = -1;
  std::function<void()> body;
};
inline Rt& rt() { static Rt r; return r; }
inline void fiber_main() {
  Rt& r = rt();
  r.body();
  r.fibers[r.cur].state = DONE;
  swapcontext(&r.fibers[r.cur].ctx, &r.sched);
}
inline void wait_at(State s) {
  Rt& r = rt();
  r.fibers[r.cur].state = s;
  swapcontext(&r.fibers[r.cur].ctx, &r.sched);
}
}  // namespace emu

// the block's shared memory (one block runs at a time): `extern __shared__ ... smem_raw[]` in the
// kernels names this array
alignas(16) inline unsigned char smem_raw[240 * 1024];
// the running fiber's coordinates (set by the scheduler before it switches to a fiber)
inline EmuDim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { emu::wait_at(emu::AT_BLOCK); }
inline void emu_warp_sync() { emu::wait_at(emu::AT_WARP); }
inline emu::Lane& emu_slot(int lane) { return emu::rt().lanes[(threadIdx.x & ~31u) + lane]; }

namespace emu {
// Run `body` as one block of `nthreads` threads at block index `b`.
inline void run_block(EmuDim3 b, int nthreads, const std::function<void()>& body) {
  Rt& r = rt();
  r.body = body;
  r.fibers.resize(nthreads);
  r.lanes.assign((nthreads + 31) / 32 * 32, Lane{});
  for (int i = 0; i < nthreads; ++i) {
    Fiber& f = r.fibers[i];
    f.stack.resize(1 << 16);
    f.tid = i;
    f.state = RUN;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
  }
  blockIdx = b;
  blockDim = {(unsigned)nthreads, 1, 1};
  for (;;) {
    bool ran = false;
    for (int i = 0; i < nthreads; ++i) {
      if (r.fibers[i].state != RUN) continue;
      r.cur = i;
      threadIdx = {r.fibers[i].tid, 0, 0};
      swapcontext(&r.sched, &r.fibers[i].ctx);
      ran = true;
    }
    (void)ran;
    // open the warp barriers whose live lanes all wait, then the block barrier
    bool opened = false, live = false, all_block = true;
    for (int w = 0; w * 32 < nthreads; ++w) {
      int waiting = 0, alive = 0;
      for (int i = 32 * w; i < std::min(32 * w + 32, nthreads); ++i) {
        if (r.fibers[i].state == DONE) continue;
        ++alive;
        waiting += r.fibers[i].state == AT_WARP;
      }
      if (alive > 0 && waiting == alive) {
        for (int i = 32 * w; i < std::min(32 * w + 32, nthreads); ++i)
          if (r.fibers[i].state == AT_WARP) r.fibers[i].state = RUN;
        opened = true;
      } else if (waiting > 0) {
        // some lanes at a warp-wide operation, others at __syncthreads: a divergent warp
        bool at_block = false;
        for (int i = 32 * w; i < std::min(32 * w + 32, nthreads); ++i)
          at_block |= r.fibers[i].state == AT_BLOCK;
        if (at_block) {
          std::fprintf(stderr, "emu: warp %d of block (%u,%u,%u) diverged across a warp-wide operation\n",
                       w, b.x, b.y, b.z);
          std::exit(3);
        }
      }
    }
    if (opened) continue;
    for (auto& f : r.fibers) {
      if (f.state == DONE) continue;
      live = true;
      all_block &= f.state == AT_BLOCK;
    }
    if (!live) return;
    if (all_block) {
      for (auto& f : r.fibers)
        if (f.state == AT_BLOCK) f.state = RUN;
      continue;
    }
    std::fprintf(stderr, "emu: block (%u,%u,%u) is stuck (a barrier some threads never reach)\n", b.x,
                 b.y, b.z);
    std::exit(3);
  }
}
// Run every block of `grid` (x fastest), `nthreads` threads each.
inline void launch(EmuDim3 grid, int nthreads, const std::function<void()>& body) {
  gridDim = grid;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) run_block({x, y, z}, nthreads, body);
}
}  // namespace emu

// ---------------------------------------------------------------- warp-wide built-ins
template <class V> inline V __shfl_sync(unsigned, V v, int src) {
  static_assert(sizeof(V) <= 8, "shuffle of a word");
  const int lane = threadIdx.x & 31;
  uint64_t x = 0;
  std::memcpy(&x, &v, sizeof(V));
  emu_slot(lane).w[0] = x;
  emu_warp_sync();
  x = emu_slot(src & 31).w[0];
  emu_warp_sync();
  V r;
  std::memcpy(&r, &x, sizeof(V));
  return r;
}
template <class V> inline V __shfl_xor_sync(unsigned m, V v, int mask) {
  return __shfl_sync(m, v, (int)(threadIdx.x & 31) ^ mask);
}
inline unsigned __ballot_sync(unsigned, int pred) {
  const int lane = threadIdx.x & 31;
  emu_slot(lane).w[0] = pred != 0;
  emu_warp_sync();
  unsigned r = 0;
  for (int l = 0; l < 32; ++l) r |= (unsigned)emu_slot(l).w[0] << l;
  emu_warp_sync();
  return r;
}

// ---------------------------------------------------------------- the PTX primitives
inline float ptx_cvt_f32_f16(u16 x) {
  const int e = (x >> 10) & 31, m = x & 1023;
  const float mag = e == 0    ? std::ldexp((float)m, -24)                       // zero, subnormal
                    : e == 31 ? (m ? NAN : INFINITY)                            // inf, NaN
                              : std::ldexp((float)(1024 + m), e - 25);          // normal
  return (x & 0x8000) ? -mag : mag;
}
inline u16 ptx_cvt_rn_bf16(float v) {
  u32 u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40);  // NaN stays NaN
  return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                  // nearest, ties to even
}
inline u16 ptx_cvt_rn_f16(float v) {  // nearest, ties to even (nearbyint in the default mode)
  const u16 sign = (__float_as_uint(v) >> 16) & 0x8000;
  const double a = std::fabs((double)v);
  if (std::isnan(v)) return 0x7e00;
  if (a < std::ldexp(1.0, -14)) return sign | (u16)std::nearbyint(a * std::ldexp(1.0, 24));
  int e;
  std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1): the leading bit is 2^(e - 1)
  double m = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits, [1024, 2048]
  if (m == 2048) m = 1024, ++e;
  if (e - 1 > 15) return sign | 0x7c00;  // overflow: inf
  return sign | (u16)((e - 1 + 15) << 10) | (u16)(m - 1024);
}
inline u32 ptx_cvt_rna_tf32(float x) {
  u32 u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf, NaN
  return (u + 0x1000u) & ~0x1fffu;                  // nearest, ties away from zero
}
inline float ptx_ex2_approx_ftz(float y) {
  const float r = std::exp2(y);
  return std::fabs(r) < 1.17549435e-38f ? 0.0f : r;  // results below 2^-126 flush to +0
}
inline float ptx_rcp_approx_ftz(float x) { return 1.0f / x; }
// shared-window addresses: offsets into smem_raw
inline u32 smem_addr(const void* p) { return (u32)((const unsigned char*)p - smem_raw); }
inline void cp_async16_sa(u32 dst, const void* src, int src_bytes) {
  std::memset(smem_raw + dst, 0, 16);
  std::memcpy(smem_raw + dst, src, src_bytes);
}
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}

// ldmatrix.x4: lane l gives the address of row l % 8 of matrix l / 8; r[m] = (row lane / 4,
// columns 2 (lane % 4), +1) of matrix m; .trans: (rows 2 (lane % 4), +1; column lane / 4).
inline void emu_ldsm(u32* r, const void* p, bool trans) {
  const int lane = threadIdx.x & 31;
  emu_slot(lane).w[0] = (uint64_t)(uintptr_t)p;
  emu_warp_sync();
  for (int m = 0; m < 4; ++m) {
    if (!trans) {
      const u16* row = (const u16*)(uintptr_t)emu_slot(8 * m + (lane >> 2)).w[0];
      r[m] = (u32)row[2 * (lane & 3)] | ((u32)row[2 * (lane & 3) + 1] << 16);
    } else {
      const u16* r0 = (const u16*)(uintptr_t)emu_slot(8 * m + 2 * (lane & 3)).w[0];
      const u16* r1 = (const u16*)(uintptr_t)emu_slot(8 * m + 2 * (lane & 3) + 1).w[0];
      r[m] = (u32)r0[lane >> 2] | ((u32)r1[lane >> 2] << 16);
    }
  }
  emu_warp_sync();
}
inline void ldsm_x4_sa(u32* r, u32 a) { emu_ldsm(r, smem_raw + a, false); }
inline void ldsm_x4_trans_sa(u32* r, u32 a) { emu_ldsm(r, smem_raw + a, true); }

// mma.sync.m16n8k16.row.col, f32 accumulation. Fragments (gid = lane / 4, tig = lane % 4):
// a0 = A[gid][2tig, +1], a1 = A[gid + 8][2tig, +1], a2 = A[gid][2tig + 8, +9], a3 = A[gid + 8]
// [2tig + 8, +9]; b0 = B[2tig, +1][gid], b1 = B[2tig + 8, +9][gid]; c0, c1 = C[gid][2tig, +1],
// c2, c3 = C[gid + 8][2tig, +1]. Each output: the accumulator plus the 16 exact products, summed
// in f64 and rounded once to f32.
template <bool BF16> inline void emu_mma(float* c, const u32* a, const u32* b) {
  const int lane = threadIdx.x & 31;
  emu::Lane& s = emu_slot(lane);
  for (int i = 0; i < 4; ++i) s.w[i] = a[i];
  for (int i = 0; i < 2; ++i) s.w[4 + i] = b[i];
  emu_warp_sync();
  auto half = [](u32 word, int hi) -> double {
    const u16 x = (u16)(word >> (16 * hi));
    return BF16 ? (double)__uint_as_float((u32)x << 16) : (double)ptx_cvt_f32_f16(x);
  };
  auto A = [&](int row, int k) -> double {  // element (row, k) of the 16 x 16 operand
    const int g = row & 7, t = (k & 7) >> 1, reg = (row >> 3) + 2 * (k >> 3);
    return half((u32)emu_slot(4 * g + t).w[reg], k & 1);
  };
  auto B = [&](int k, int n) -> double {  // element (k, n) of the 16 x 8 operand
    const int t = (k & 7) >> 1, reg = k >> 3;
    return half((u32)emu_slot(4 * n + t).w[4 + reg], k & 1);
  };
  const int gid = lane >> 2, tig = lane & 3;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = gid + 8 * (i >> 1), col = 2 * tig + (i & 1);
    double acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    out[i] = (float)acc;
  }
  emu_warp_sync();
  for (int i = 0; i < 4; ++i) c[i] = out[i];
}
inline void ptx_mma_bf16(float* c, const u32* a, const u32* b) { emu_mma<true>(c, a, b); }
inline void ptx_mma_f16(float* c, const u32* a, const u32* b) { emu_mma<false>(c, a, b); }
