// glacheck GLA kernels: the prelude shared by gla_fwd.cu and gla_bwd.cu (compiled at run time by
// NVRTC, which receives this file as the named header "gla_common.cuh"; no CUDA header needed).
//
// - the PTX primitives: every inline-PTX instruction (conversions, ex2 / rcp, cp.async, mma.sync,
//   ldmatrix), one function each, replaced by gpu/emu/emu_ptx.h when GLA_EMU is defined;
// - element types bf16_t / f16_t (bit patterns) and their conversions to and from f32
//   (round-to-nearest-even), the TF32 rounding tf32r;
// - exp_nonpos / decay / cumsum_step: the reset-aware chunk-local cumsums (docs/math.md §3) and
//   their exponentials: every exponent reaching exp2 is <= 0, a decay across a reset is exactly 0;
// - Vec8: eight elements by 16-byte loads;
// - store2 / store_state_tiles: mma accumulators rounded to T and stored;
// - Mma<T>: one warp-level mma.sync m16n8k16 (bf16 / f16 operands, f32 accumulation), and
//   Tile<T, strides>: its operands loaded from shared memory (f32: FFMA in the same layout).
#pragma once

typedef unsigned short u16;
typedef unsigned int u32;

#define RCP_LN2 1.4426950216f
#define CH 64  // chunk length C

// ---------------------------------------------------------------- PTX primitives
// Every inline-PTX instruction of the kernels, one function each; the rest of this file and the
// kernel sources are CUDA C++ on top of them. With GLA_EMU defined they come instead from
// gpu/emu/emu_ptx.h, the CPU emulation that runs the kernels' logic without a GPU (gpu/emu/).
#ifndef GLA_EMU
__device__ __forceinline__ float ptx_cvt_f32_f16(u16 x) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
  return f;
}
__device__ __forceinline__ u16 ptx_cvt_rn_bf16(float v) {
  u16 r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
  return r;
}
__device__ __forceinline__ u16 ptx_cvt_rn_f16(float v) {
  u16 r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
  return r;
}
// f32 -> TF32 bits (round to nearest, ties away from zero)
__device__ __forceinline__ u32 ptx_cvt_rna_tf32(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
// 2^y (one MUFU.EX2; a result below 2^-126 flushes to +0)
__device__ __forceinline__ float ptx_ex2_approx_ftz(float y) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(y));
  return r;
}
// 1 / x (<= 1 ulp for normal x)
__device__ __forceinline__ float ptx_rcp_approx_ftz(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
// The 32-bit shared-window address of a pointer into shared memory. The _sa forms below take such
// addresses, so that a loop can compute one base and add constant offsets (ptxas folds them into
// the instructions) instead of converting a generic pointer per access.
__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
  return r;
}
// 16-byte global -> shared copy; src_bytes = 0 zero-fills (src must still be a valid address).
__device__ __forceinline__ void cp_async16_sa(u32 dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }
// c[0..4] += a @ b: one mma.sync.m16n8k16 (row.col, f32 accumulation); see Mma below
__device__ __forceinline__ void ptx_mma_bf16(float* c, const u32* a, const u32* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void ptx_mma_f16(float* c, const u32* a, const u32* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// ldmatrix.x4: four 8 x 8 matrices of 16-bit elements from shared memory in one instruction; lane
// l supplies the address of row (l & 7) of matrix (l >> 3) (16-byte aligned), and receives in r[m]
// the elements (row lane / 4, columns 2 (lane % 4), +1) of matrix m: the mma.sync fragment layout.
// A fragment of a row-major 16 x 16 tile (k contiguous): row (l & 15), column 8 (l >> 4).
// B fragments of two adjacent 8-column groups stored n-major (k contiguous): row n =
// (l & 7) + 8 (l >> 4), column 8 ((l >> 3) & 1); r[0], r[1] serve the first group, r[2], r[3] the second.
__device__ __forceinline__ void ldsm_x4_sa(u32* r, u32 a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
// ldmatrix.x4.trans: the same four matrices, each transposed on the way: r[m] holds (row 2 (lane % 4),
// +1; column lane / 4) of matrix m. B fragments of two adjacent 8-column groups of a k-major tile
// (row = k, n contiguous): lane l supplies row k = (l & 15), column 8 (l >> 4) of the pair;
// r[0], r[1] serve the first group, r[2], r[3] the second.
__device__ __forceinline__ void ldsm_x4_trans_sa(u32* r, u32 a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

#else
#include "emu_ptx.h"
#endif
// the same operations on generic pointers into shared memory
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  cp_async16_sa(smem_addr(dst), src, src_bytes);
}
__device__ __forceinline__ void ldsm_x4(u32* r, const void* p) { ldsm_x4_sa(r, smem_addr(p)); }
__device__ __forceinline__ void ldsm_x4_trans(u32* r, const void* p) { ldsm_x4_trans_sa(r, smem_addr(p)); }

// ---------------------------------------------------------------- element types
struct bf16_t { u16 x; };
struct f16_t { u16 x; };

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t v) { return __uint_as_float(((u32)v.x) << 16); }
__device__ __forceinline__ float to_f(f16_t v) { return ptx_cvt_f32_f16(v.x); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16_t from_f<bf16_t>(float v) {
  bf16_t r;
  r.x = ptx_cvt_rn_bf16(v);
  return r;
}
template <> __device__ __forceinline__ f16_t from_f<f16_t>(float v) {
  f16_t r;
  r.x = ptx_cvt_rn_f16(v);
  return r;
}

// x rounded to T and back (identity for f32): a rounding point evaluated in f32 registers.
template <typename T> __device__ __forceinline__ float rnd(float x) { return to_f(from_f<T>(x)); }
// x and y rounded to a 16-bit T, packed into one 32-bit word (x in the low half: the lower address).
template <typename T> __device__ __forceinline__ u32 pack2(float x, float y) {
  return (u32)from_f<T>(x).x | ((u32)from_f<T>(y).x << 16);
}

// f32 -> TF32 (cvt.rna: round to nearest, ties away from zero), returned as f32.
__device__ __forceinline__ float tf32r(float x) { return __uint_as_float(ptx_cvt_rna_tf32(x)); }

// ---------------------------------------------------------------- exponentials
// exp of a non-positive natural-log exponent (exp2 of its log2-scaled value).
// FAST = false: exp2f (MUFU.EX2 plus the subnormal-result fix-up: a few instructions).
// FAST = true:  ex2.approx.ftz.f32 alone (one MUFU.EX2; a result below 2^-126 flushes to +0, which
//               changes a decay factor by less than 2^-126 absolute). Same exponents (<= 0) either way.
template <bool FAST> __device__ __forceinline__ float exp_nonpos(float x) {
  const float y = fminf(x, 0.0f) * RCP_LN2;
  if (FAST) return ptx_ex2_approx_ftz(y);
  return exp2f(y);
}
// Decay from row x to row y (x <= y) given the cumsums F and reset counts Z of both rows:
// 0 across a reset (different reset counts), else exp(Fy - Fx).
template <bool FAST> __device__ __forceinline__ float decay(float fx, int zx, float fy, int zy) {
  return (zx == zy) ? exp_nonpos<FAST>(fy - fx) : 0.0f;
}

// One step of the chunk-local inclusive cumsum of the (natural-log) gates with exact resets
// (docs/math.md §3): a gate of -inf starts a new segment (reset count Z += 1, F = 0); any other
// gate adds to F in row order (the CPU twin's order).
__device__ __forceinline__ void cumsum_step(float x, float& F, int& Z) {
  if (x == -__int_as_float(0x7f800000)) {
    Z += 1;
    F = 0.0f;
  } else {
    F += x;
  }
}

// ---------------------------------------------------------------- vector loads
// Eight consecutive elements of T held as raw 32-bit words, loaded by 16-byte loads (one for the
// 16-bit types, two for f32; the address must be 16-byte aligned). Staging loops issue every
// Vec8 load of a thread before its first shared-memory store, so the loads' latencies overlap.
template <typename T> struct Vec8 {
  static constexpr int W = 2 * (int)sizeof(T);  // 32-bit words: 4 (16-bit T), 8 (f32)
  alignas(16) u32 w[W];
  __device__ __forceinline__ void load(const T* p) {
#pragma unroll
    for (int i = 0; i < W / 4; ++i) reinterpret_cast<uint4*>(w)[i] = reinterpret_cast<const uint4*>(p)[i];
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < W; ++i) w[i] = 0u;
  }
  // element e (a compile-time index after unrolling) as T, and as f32
  __device__ __forceinline__ T raw(int e) const {
    if constexpr (sizeof(T) == 4) {
      return __uint_as_float(w[e]);
    } else {
      T t;
      t.x = (u16)(w[e >> 1] >> (16 * (e & 1)));
      return t;
    }
  }
  __device__ __forceinline__ float get(int e) const { return to_f(raw(e)); }
};

// Eight consecutive f32 values from shared memory (16-byte aligned), rounded to T and stored by
// 16-byte stores (one for the 16-bit types, two for f32; dst 16-byte aligned).
template <typename T> __device__ __forceinline__ void store8(T* dst, const float* src) {
  const float4 a = reinterpret_cast<const float4*>(src)[0], b = reinterpret_cast<const float4*>(src)[1];
  if constexpr (sizeof(T) == 4) {
    reinterpret_cast<float4*>(dst)[0] = a;
    reinterpret_cast<float4*>(dst)[1] = b;
  } else {
    *reinterpret_cast<uint4*>(dst) =
        make_uint4(pack2<T>(a.x, a.y), pack2<T>(a.z, a.w), pack2<T>(b.x, b.y), pack2<T>(b.z, b.w));
  }
}

// ---------------------------------------------------------------- tensor-core product
// c[0..4] += A (16 x 16, row-major fragment a[0..4]) @ B (16 x 8, column-major fragment b[0..2]):
// one mma.sync.m16n8k16 with f32 accumulation (accumulator layout: c0, c1 = row gid, columns
// 2 tig, 2 tig + 1; c2, c3 = row gid + 8; gid = lane / 4, tig = lane % 4).
template <typename T> struct Mma;
template <> struct Mma<bf16_t> {
  static __device__ __forceinline__ void run(float* c, const u32* a, const u32* b) { ptx_mma_bf16(c, a, b); }
};
template <> struct Mma<f16_t> {
  static __device__ __forceinline__ void run(float* c, const u32* a, const u32* b) { ptx_mma_f16(c, a, b); }
};

// ---------------------------------------------------------------- accumulator stores
// store two consecutive values (columns 2tig, 2tig+1) of an accumulator row, rounded to T
template <typename T> __device__ __forceinline__ void store2(T* p, float x, float y);
template <> __device__ __forceinline__ void store2<float>(float* p, float x, float y) {
  p[0] = x;
  p[1] = y;
}
template <> __device__ __forceinline__ void store2<bf16_t>(bf16_t* p, float x, float y) {
  *reinterpret_cast<u32*>(p) = pack2<bf16_t>(x, y);
}
template <> __device__ __forceinline__ void store2<f16_t>(f16_t* p, float x, float y) {
  *reinterpret_cast<u32*>(p) = pack2<f16_t>(x, y);
}
// A warp's share of a state [K][BV] held as mma accumulators S[MT][NT][4] (rows rowbase + 16 mt
// + gid (+ 8), columns 8 nt + 2 tig (+ 1)), rounded to T, to dst[row * ld + column]: the state
// kernels' stored snapshots (forward: Hs; backward: dHs).
// SECTOR (16-bit T, NT even): per row and pair of n8 tiles (16 columns, one 32-byte sector) the
// quad's lanes trade their column pairs so that lane tig stores columns 4 tig .. 4 tig + 3 (8
// bytes): one full sector per row and store instead of two half sectors, for 4 shuffles (and, in
// the backward state kernel, 29 more registers: it keeps the plain stores).
template <typename T, int MT, int NT, bool SECTOR = false>
__device__ __forceinline__ void store_state_tiles(T* dst, size_t ld, const float (&S)[MT][NT][4], int rowbase) {
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  if constexpr (SECTOR && sizeof(T) == 2 && NT % 2 == 0) {
    const int s0 = (lane & ~3) | ((2 * tig) & 3), s1 = (lane & ~3) | ((2 * tig + 1) & 3);
    u16* d16 = reinterpret_cast<u16*>(dst);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int np = 0; np < NT / 2; ++np)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float* a = S[mt][2 * np];
          const float* b = S[mt][2 * np + 1];
          const u32 x = pack2<T>(a[2 * half], a[2 * half + 1]);
          const u32 y = pack2<T>(b[2 * half], b[2 * half + 1]);
          const u32 x0 = __shfl_sync(0xffffffffu, x, s0), y0 = __shfl_sync(0xffffffffu, y, s0);
          const u32 x1 = __shfl_sync(0xffffffffu, x, s1), y1 = __shfl_sync(0xffffffffu, y, s1);
          uint2 w;
          w.x = tig < 2 ? x0 : y0;
          w.y = tig < 2 ? x1 : y1;
          *reinterpret_cast<uint2*>(d16 + (size_t)(rowbase + mt * 16 + gid + half * 8) * ld + np * 16 + tig * 4) = w;
        }
  } else {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int half = 0; half < 2; ++half)
          store2<T>(dst + (size_t)(rowbase + mt * 16 + gid + half * 8) * ld + nt * 8 + tig * 2,
                    S[mt][nt][2 * half], S[mt][nt][2 * half + 1]);
  }
}

// ---------------------------------------------------------------- warp-level 16x8x16 product
// Tile<T, SAM, SAK, SBK, SBN>::mma: c (mma.sync accumulator layout: c0,c1 = row gid, cols 2tig,
// 2tig+1; c2,c3 = row gid+8) += A[16 x 16] @ B[16 x 8], A(m, k) = A[m*SAM + k*SAK],
// B(k, n) = B[k*SBK + n*SBN] (shared memory); bf16 / f16 through Mma<T> (gla_common.cuh).
template <int STEP> __device__ __forceinline__ u32 pk(const u16* p, int off) {
  if (STEP == 1) return *reinterpret_cast<const u32*>(p + off);
  return (u32)p[off] | ((u32)p[off + STEP] << 16);
}

template <typename T, int SAM, int SAK, int SBK, int SBN> struct Tile {
  static __device__ __forceinline__ void mma(float* c, const T* A, const T* B, int) {
    const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
    const u16* a = reinterpret_cast<const u16*>(A);
    const u16* b = reinterpret_cast<const u16*>(B);
    u32 af[4], bf[2];
    af[0] = pk<SAK>(a, gid * SAM + (2 * tig) * SAK);
    af[1] = pk<SAK>(a, (gid + 8) * SAM + (2 * tig) * SAK);
    af[2] = pk<SAK>(a, gid * SAM + (2 * tig + 8) * SAK);
    af[3] = pk<SAK>(a, (gid + 8) * SAM + (2 * tig + 8) * SAK);
    bf[0] = pk<SBK>(b, (2 * tig) * SBK + gid * SBN);
    bf[1] = pk<SBK>(b, (2 * tig + 8) * SBK + gid * SBN);
    Mma<T>::run(c, af, bf);
  }
};
// f32: FFMA with the same accumulator layout, k in order; tf32 rounds every operand first.
// (The k loop is kept rolled: fully unrolled f32 tiles inside the callers' unrolled loops made
// NVRTC take minutes.)
template <int SAM, int SAK, int SBK, int SBN> struct Tile<float, SAM, SAK, SBK, SBN> {
  static __device__ __forceinline__ void mma(float* c, const float* A, const float* B, int tf32) {
    const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
    float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
#pragma unroll 1
    for (int kk = 0; kk < 16; ++kk) {
      float a0 = A[gid * SAM + kk * SAK], a1 = A[(gid + 8) * SAM + kk * SAK];
      float b0 = B[kk * SBK + (2 * tig) * SBN], b1 = B[kk * SBK + (2 * tig + 1) * SBN];
      if (tf32) {
        a0 = tf32r(a0);
        a1 = tf32r(a1);
        b0 = tf32r(b0);
        b1 = tf32r(b1);
      }
      c0 = fmaf(a0, b0, c0);
      c1 = fmaf(a0, b1, c1);
      c2 = fmaf(a1, b0, c2);
      c3 = fmaf(a1, b1, c3);
    }
    c[0] = c0;
    c[1] = c1;
    c[2] = c2;
    c[3] = c3;
  }
};
