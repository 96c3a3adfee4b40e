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
//
// Built with -fsanitize=thread, it is a race detector for what the kernels' own code does: every
// fiber is a ThreadSanitizer fiber, switched without synchronisation; __syncthreads is the only
// ordering between the threads of a block (warp-wide operations order nothing, as on the GPU);
// blocks run one after another. A cp.async copy is a write by its
// thread when issued, so another thread's access to those bytes before a barrier is reported. The
// runtime's own bookkeeping is not instrumented.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN 1
#define EMU_RT __attribute__((no_sanitize_thread, noinline))  // runtime code: not instrumented
#else
#define EMU_TSAN 0
#define EMU_RT
#endif

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
// A cp.async copy in flight: it lands when its thread waits for its group (or ends).
struct Copy {
  unsigned char* dst;
  const void* src;
  int bytes;
  unsigned group;
};
struct Fiber {
  Copy pending[128];
  int npending = 0;
  unsigned group = 0;  // the open (not yet committed) group
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;  // uninitialised (new char[]), fresh for every block
  unsigned tid = 0;
  State state = RUN;
  unsigned gen = 0;  // the block barrier it waits at (TSan: which of two sync objects)
  void* tsan = nullptr;
};
// Exchange slots of the warp-wide operations: each lane writes its operands, all wait, each reads.
struct Lane { uint64_t w[12]; };
struct Rt {
  std::vector<Fiber> fibers;
  Lane lanes[1024];  // [thread]; written before read by every warp-wide operation, never cleared
  ucontext_t sched;
  int cur = -1;
  unsigned gen = 0;  // block barriers opened so far
  void (*call)(void*) = nullptr;  // the block's body: call(ctx) (plain data, set by the runtime)
  void* ctx = nullptr;
  void* tsan_main = nullptr;
  // TSan sync objects: the launch's start and end, the block barrier (two, alternating: a fiber
  // may arrive at the next barrier before a slower one has left this one)
  char launch_sync, done_sync, bar_sync[2];
};
inline Rt& rt() { static Rt r; return r; }
EMU_RT inline void to_scheduler() {
  Rt& r = rt();
#if EMU_TSAN
  __tsan_switch_to_fiber(r.tsan_main, __tsan_switch_to_fiber_no_sync);
#endif
  swapcontext(&r.fibers[r.cur].ctx, &r.sched);
}
void land_copies(unsigned below);
EMU_RT inline void fiber_main() {
  Rt& r = rt();
#if EMU_TSAN
  __tsan_acquire(&r.launch_sync);
#endif
  r.call(r.ctx);
  land_copies(~0u);  // copies still in flight at the end
#if EMU_TSAN
  __tsan_release(&r.done_sync);
#endif
  r.fibers[r.cur].state = DONE;
  to_scheduler();
}
EMU_RT inline void wait_at(State s) {
  Rt& r = rt();
  Fiber& f = r.fibers[r.cur];
  f.state = s;
  if (s == AT_BLOCK) {
    f.gen = r.gen;
#if EMU_TSAN
    __tsan_release(&r.bar_sync[f.gen & 1]);
#endif
  }
  to_scheduler();
#if EMU_TSAN
  if (s == AT_BLOCK) __tsan_acquire(&r.bar_sync[r.fibers[r.cur].gen & 1]);
#endif
}
}  // namespace emu

// the block's shared memory (one block runs at a time): `extern __shared__ ... smem_raw[]` in the
// kernels names this array
alignas(16) inline unsigned char smem_raw[240 * 1024];
// the running fiber's coordinates (set by the scheduler before it switches to a fiber)
inline EmuDim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { emu::wait_at(emu::AT_BLOCK); }
inline void emu_warp_sync() { emu::wait_at(emu::AT_WARP); }
EMU_RT inline emu::Lane& emu_slot(int lane) { return emu::rt().lanes[(threadIdx.x & ~31u) + lane]; }

namespace emu {
// Run call(ctx) as one block of `nthreads` threads at block index `b`.
EMU_RT inline void run_block(EmuDim3 b, int nthreads, void (*call)(void*), void* ctx) {
  Rt& r = rt();
  if (nthreads > 1024) {
    std::fprintf(stderr, "emu: %d threads per block (at most 1024)\n", nthreads);
    std::exit(3);
  }
  r.call = call;
  r.ctx = ctx;
  r.fibers.clear();  // fresh stacks: under TSan, memory freed and allocated again starts clean
  r.fibers.resize(nthreads);
  r.gen = 0;
#if EMU_TSAN
  if (!r.tsan_main) r.tsan_main = __tsan_get_current_fiber();
#endif
  for (int i = 0; i < nthreads; ++i) {
    Fiber& f = r.fibers[i];
    const size_t stack_bytes = EMU_TSAN ? 1 << 18 : 1 << 16;
    f.stack.reset(new char[stack_bytes]);
    f.tid = i;
    f.state = RUN;
    f.npending = 0;
    f.group = 0;
#if EMU_TSAN
    f.tsan = __tsan_create_fiber(0);
#endif
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = stack_bytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
  }
  blockIdx = b;
  blockDim = {(unsigned)nthreads, 1, 1};
  for (;;) {
    for (int i = 0; i < nthreads; ++i) {
      if (r.fibers[i].state != RUN) continue;
      r.cur = i;
      threadIdx = {r.fibers[i].tid, 0, 0};
#if EMU_TSAN
      __tsan_switch_to_fiber(r.fibers[i].tsan, __tsan_switch_to_fiber_no_sync);
#endif
      swapcontext(&r.sched, &r.fibers[i].ctx);
    }
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
    if (!live) {
#if EMU_TSAN
      for (auto& f : r.fibers) __tsan_destroy_fiber(f.tsan);
#endif
      return;
    }
    if (all_block) {
      for (auto& f : r.fibers)
        if (f.state == AT_BLOCK) f.state = RUN;
      ++r.gen;
      continue;
    }
    std::fprintf(stderr, "emu: block (%u,%u,%u) is stuck (a barrier some threads never reach)\n", b.x,
                 b.y, b.z);
    std::exit(3);
  }
}
// Run every block of `grid` (x fastest), `nthreads` threads each. Under TSan each block is ordered
// after everything before it and before everything after it: the blocks share one emulated shared
// memory, so races between blocks (on global memory) are not looked for, only those within one.
template <class F> void invoke(void* f) { (*static_cast<F*>(f))(); }
template <class F> EMU_RT void launch(EmuDim3 grid, int nthreads, F&& body) {
  typedef typename std::remove_reference<F>::type Body;
  gridDim = grid;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
#if EMU_TSAN
        __tsan_release(&rt().launch_sync);
#endif
        run_block({x, y, z}, nthreads, invoke<Body>, (void*)&body);
#if EMU_TSAN
        __tsan_acquire(&rt().done_sync);
#endif
      }
}
}  // namespace emu

// ---------------------------------------------------------------- warp-wide built-ins
template <class V> EMU_RT inline V __shfl_sync(unsigned, V v, int src) {
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
EMU_RT inline unsigned __ballot_sync(unsigned, int pred) {
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
// cp.async: a copy is recorded when issued and lands (zero-fill, then src_bytes bytes) when its
// thread waits for its group, so a kernel that reads the destination too early sees stale data,
// and under TSan another thread's access before that wait and a barrier is a race.
inline __attribute__((noinline)) void emu_copy16(unsigned char* dst, const void* src, int bytes) {
  std::memset(dst, 0, 16);
  std::memcpy(dst, src, bytes);
}
namespace emu {
EMU_RT inline void land_copies(unsigned below) {  // every copy of a group < below
  Fiber& f = rt().fibers[rt().cur];
  int kept = 0;
  for (int i = 0; i < f.npending; ++i) {
    const Copy c = f.pending[i];
    if (c.group < below) {
      emu_copy16(c.dst, c.src, c.bytes);
    } else {
      f.pending[kept++] = c;
    }
  }
  f.npending = kept;
}
}  // namespace emu
EMU_RT inline void cp_async16_sa(u32 dst, const void* src, int src_bytes) {
  emu::Fiber& f = emu::rt().fibers[emu::rt().cur];
  if (f.npending == 128) {
    std::fprintf(stderr, "emu: more than 128 cp.async copies in flight in one thread\n");
    std::exit(3);
  }
  f.pending[f.npending++] = {smem_raw + dst, src, src_bytes, f.group};
}
EMU_RT inline void cp_async_commit() { ++emu::rt().fibers[emu::rt().cur].group; }
// all but the N most recent committed groups land
template <int N> EMU_RT inline void cp_async_wait() {
  const unsigned g = emu::rt().fibers[emu::rt().cur].group;
  emu::land_copies(g >= (unsigned)N ? g - N : 0);
}

// ldmatrix.x4: lane l gives the address of row l % 8 of matrix l / 8; r[m] = (row lane / 4,
// columns 2 (lane % 4), +1) of matrix m; .trans: (rows 2 (lane % 4), +1; column lane / 4).
// a lane's read of shared memory (instrumented under TSan: it is the kernel's access)
inline __attribute__((noinline)) u16 emu_smem16(const u16* p) { return *p; }
EMU_RT inline void emu_ldsm(u32* r, const void* p, bool trans) {
  const int lane = threadIdx.x & 31;
  emu_slot(lane).w[0] = (uint64_t)(uintptr_t)p;
  emu_warp_sync();
  for (int m = 0; m < 4; ++m) {
    if (!trans) {
      const u16* row = (const u16*)(uintptr_t)emu_slot(8 * m + (lane >> 2)).w[0];
      r[m] = (u32)emu_smem16(row + 2 * (lane & 3)) | ((u32)emu_smem16(row + 2 * (lane & 3) + 1) << 16);
    } else {
      const u16* r0 = (const u16*)(uintptr_t)emu_slot(8 * m + 2 * (lane & 3)).w[0];
      const u16* r1 = (const u16*)(uintptr_t)emu_slot(8 * m + 2 * (lane & 3) + 1).w[0];
      r[m] = (u32)emu_smem16(r0 + (lane >> 2)) | ((u32)emu_smem16(r1 + (lane >> 2)) << 16);
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
template <bool BF16> EMU_RT inline void emu_mma(float* c, const u32* a, const u32* b) {
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
