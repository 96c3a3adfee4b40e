// glacheck GLA chunked BACKWARD kernels (compiled at run time by NVRTC, with the shared prelude
// gla_common.cuh; no CUDA headers needed).
//
// docs/math.md §4 ("fla chunk backward"), chunk C = 64, sub-chunk c = 16, with the
// forward's reset-aware chunk-local cumsum (a -inf gate restarts the sum; a decay across a reset
// is exactly 0; every exponent reaching exp2 is <= 0).
//
// Inputs from the forward (gla_fwd.cu): per chunk and head, from gla_fwd_intra_*
//   qg = rnd(q * D(start, i)) [64][K], kgT = rnd(k_j * D(j, last)) [K][64] (transposed),
//   A = rnd(scale q_i.k_j D(j, i)) [64][64] (j > i: 0), gamma = D(start, last) [K] (f32),
// and from gla_fwd_state_* (launched with hs != null when a backward follows)
//   Hs[p] = rnd(S) [K][V], the state BEFORE chunk p (S0 = h0; S = gamma*S + kgT @ v).
//
// Kernels (rnd = round to the input dtype T; identity for f32):
//  gla_bwd_state_<T>_k<K>   grid (V/32, H, N), 128 threads. One (value block, head, sequence),
//     sweeping the chunks in reverse: dHs[p] = rnd(dS) (gradient of the state AFTER chunk p),
//                    dS = gamma*dS + scale * qg^T @ do  (dS seeded with dhT); dh0 = final dS (f32).
//  gla_bwd_dqk_<T>          grid (chunks, H, K/64), 256 threads (bwd_dqk_tc). One (chunk, head, 64
//     channels): dA = scale * do @ v^T (j <= i), dq_inter = scale * D(start,i) * (do @ Hs^T),
//     dk_inter = D(i,last) * (v @ dHs^T), then the intra parts: off-diagonal sub-blocks on tensor
//     cores through the CPU twin's anchors (reference/src/chunked/intra.rs Intra::backward):
//     a = first row of the query block (dq, factor rnd(k_j D(j, a))), b = last row of the key
//     block (dk, factor rnd(q_i D(b, i))), both factors <= 1; diagonal sub-blocks elementwise in
//     f32 (j <= i only, one decay per pair for dq and dk). Then the gate gradient in the chunk
//     reverse-sum form of docs/math.md §4:
//        dg_i = sum_{s=i..L-1} (q_s dq_s - k_s dk_s) + gamma * rowsum(Hs * dHs) + sum_j k_j dk_inter_j
//     (per-channel gates: written rounded to T; scalar gates: per-channel f32 partials to a
//     scratch buffer, summed over channels by gla_bwd_dg_reduce_<T>).
//  gla_bwd_dqk_local_<T>    (bwd_dqk_local) dg in the LOCAL form alpha_t rowsum(S_{t-1} dS_t),
//     evaluated chunkwise as plain sums of terms that all carry alpha_t: accurate relative to
//     M_dg_local where the reverse sum above cancels (alpha -> 0). Its dq, dk intra parts run in
//     f32 FFMA with f32 dA and the same rounded off-diagonal factors as gla_bwd_dqk_<T>.
//  gla_bwd_dv_<T>           grid (chunks, H, V/64), 128 threads:  dv = A^T @ do + kg @ dHs.
//  gla_bwd_dg_reduce_<T>    one thread per (b, t, h) row: dg = rnd(sum_d dg_partial[d]).
// Products: bf16/f16 operands on tensor cores (mma.sync m16n8k16, f32 accumulation; fragments by
// ldmatrix, .trans for k-major tiles, where the layout allows); f32: FFMA with the same
// accumulator layout (tf32 != 0 rounds every product operand to TF32 first). Global tiles are
// staged by 16-byte copies (cp.async, or Vec8 loads all issued before the first shared store).
// Every sum has a fixed order: no atomics, bit-identical reruns.
//
// Rounding points (declared on the host as gla_gpu::backward_rounding_plan(); keep in sync):
// the forward's (qg, kgT, A, o) + the stored states Hs (bwd_state; written by the forward's
// state kernel, the same rnd(S) its output product uses) and state gradients dHs
// (dstate) + the final dq, dk, dv, dg (grads); both dqk kernels round the off-diagonal factors as
// the forward does (offdiag_q, offdiag_k; bf16 / f16 only). dA is rounded only with tf32 (da:
// TF32); bf16 / f16 kernels take it as two 16-bit terms (see bwd_dqk_tc). dh0 stays f32.

#include "gla_common.cuh"

#define LDA_F 65  // row stride (floats) of the f32 dA tile

// Every exponential of the backward is the FAST variant (exp_nonpos<true> / decay<true>, see
// gla_common.cuh: ex2.approx.ftz), as in the forward's default kernels.

// Stage a [rows][cols] tile (global row stride lds elements) into shared memory (row stride ldd);
// rows >= valid are zero-filled. cols * sizeof(T) must be a multiple of 16, as must the addresses.
template <typename T>
__device__ __forceinline__ void stage(T* dst, int ldd, const T* src, size_t lds, int rows, int cols,
                                      int valid, int tid, int nthr) {
  constexpr int PER = 16 / sizeof(T);
  const int cpr = cols / PER;
  for (int i = tid; i < rows * cpr; i += nthr) {
    const int r = i / cpr, c = (i - r * cpr) * PER;
    const T* s = src + (size_t)r * lds + c;
    cp_async16(dst + r * ldd + c, r < valid ? s : src, r < valid ? 16 : 0);
  }
}

template <typename T> struct Ld { static constexpr int PAD = 16 / sizeof(T); };
__device__ __forceinline__ bool finite_f(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// Stage the chunk's gates, q and k (as f32) for channels d0 .. d0 + 63 into sF, sQ, sK
// ([64 rows][LS], 16-byte aligned rows; rows >= L: 0) by 16-byte loads, every load issued before
// the first shared store. Thread: rows tid / 8 and tid / 8 + 32, channels 8 (tid % 8) .. +7 (a warp
// reads 4 rows x 128 contiguous bytes of q). The two float4 halves of a thread's 8 channels are
// stored in opposite orders by the two halves of each quarter warp, so that its 8 lanes' float4s
// fall in 32 different banks.
template <typename T, int LS>
__device__ __forceinline__ void stage_qkg(float* sF, float* sQ, float* sK, const T* __restrict__ q,
                                          const T* __restrict__ k, const float* __restrict__ g,
                                          int gate_cols, size_t row0, int H, int h, int K, int d0,
                                          int L, int tid) {
  const int cg = tid & 7, rb = tid >> 3;
  Vec8<T> qv[2], kv[2];
  Vec8<float> gv[2];
#pragma unroll
  for (int p = 0; p < 2; ++p) {
    const int r = rb + 32 * p;
    if (r < L) {
      const size_t rh = (row0 + r) * H + h, o = rh * K + d0 + 8 * cg;
      qv[p].load(q + o);
      kv[p].load(k + o);
      if (gate_cols == 1) {
        const u32 x = __float_as_uint(g[rh]);
#pragma unroll
        for (int e = 0; e < 8; ++e) gv[p].w[e] = x;
      } else {
        gv[p].load(g + o);
      }
    } else {
      qv[p].zero();
      kv[p].zero();
      gv[p].zero();
    }
  }
  const bool sw = (cg >> 2) & 1;
#pragma unroll
  for (int p = 0; p < 2; ++p) {
    const int o = (rb + 32 * p) * LS + 8 * cg;
    auto put = [&](float* dst, float4 lo, float4 hi) {
      *reinterpret_cast<float4*>(dst + o + (sw ? 4 : 0)) = sw ? hi : lo;
      *reinterpret_cast<float4*>(dst + o + (sw ? 0 : 4)) = sw ? lo : hi;
    };
    put(sF, make_float4(gv[p].get(0), gv[p].get(1), gv[p].get(2), gv[p].get(3)),
        make_float4(gv[p].get(4), gv[p].get(5), gv[p].get(6), gv[p].get(7)));
    put(sQ, make_float4(qv[p].get(0), qv[p].get(1), qv[p].get(2), qv[p].get(3)),
        make_float4(qv[p].get(4), qv[p].get(5), qv[p].get(6), qv[p].get(7)));
    put(sK, make_float4(kv[p].get(0), kv[p].get(1), kv[p].get(2), kv[p].get(3)),
        make_float4(kv[p].get(4), kv[p].get(5), kv[p].get(6), kv[p].get(7)));
  }
}


// ---------------------------------------------------------------- kernel 1: state gradients
// seqs: per sequence 6 ints (batch, start row, length, first chunk, number of chunks, unused).
// The chunk start states Hs come from the forward (gla_fwd_state_*, hs != null).
template <typename T, int K>
__device__ void bwd_state(const T* __restrict__ dout, const float* __restrict__ dht,
                          const int* __restrict__ seqs, int Tlen, int H, int V, float scale,
                          const T* __restrict__ qg, const float* __restrict__ gamma,
                          T* __restrict__ dHs, float* __restrict__ dh0, int tf32) {
  constexpr int BV = 32, PAD = Ld<T>::PAD;
  constexpr int LDV = BV + PAD, LDQ = K + PAD;
  constexpr int R0 = CH * LDQ;
  constexpr int MT = K / 64, NT = BV / 8;
  // Two stages (double buffer: chunk ci - 1 loads while chunk ci computes), each: qg [64][LDQ],
  // do [64][LDV], gamma [K] f32. Every part starts 16-byte aligned (R0 and 64 * LDV elements are
  // multiples of 16 bytes).
  constexpr int STG = R0 + CH * LDV + K * (int)(sizeof(float) / sizeof(T));
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const smem = reinterpret_cast<T*>(smem_raw);

  const int vb = blockIdx.x, h = blockIdx.y, n = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = seqs[6 * n], start = seqs[6 * n + 1], len = seqs[6 * n + 2];
  const int c0 = seqs[6 * n + 3], nch = seqs[6 * n + 4];
  const int e0 = vb * BV;
  const int rowbase = warp * (K / 4);

  // issue the loads of chunk ci (qg, do, gamma) into stage st (one commit group)
  auto issue = [&](int st, int ci) {
    T* sX = smem + st * STG;
    T* sVd = sX + R0;
    float* sGam = reinterpret_cast<float*>(sVd + CH * LDV);
    const int L = min(CH, len - ci * CH);
    const size_t cb = (size_t)(c0 + ci) * H + h;
    const size_t vrow = ((size_t)b * Tlen + start + ci * CH) * H + h;
    stage<T>(sX, LDQ, qg + cb * CH * K, K, CH, K, CH, tid, 128);
    stage<T>(sVd, LDV, dout + vrow * V + e0, (size_t)H * V, CH, BV, L, tid, 128);
    for (int i = tid; i < K / 4; i += 128) cp_async16(sGam + 4 * i, gamma + cb * K + 4 * i, 16);
    cp_async_commit();
  };

  float S[MT][NT][4];
  // reverse sweep: dHs[p] = rnd(dS after chunk p)
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int d = rowbase + mt * 16 + gid + ((r & 2) ? 8 : 0);
        const int e = e0 + nt * 8 + tig * 2 + (r & 1);
        S[mt][nt][r] = dht ? dht[(((size_t)n * H + h) * K + d) * V + e] : 0.0f;
      }
  if (nch > 0) issue(0, nch - 1);
#pragma unroll 1
  for (int it = 0; it < nch; ++it) {
    const int ci = nch - 1 - it;
    const size_t cb = (size_t)(c0 + ci) * H + h;
    const T* sX = smem + (it & 1) * STG;
    const T* sVd = sX + R0;
    const float* sGam = reinterpret_cast<const float*>(sVd + CH * LDV);
    if (ci > 0) {
      issue((it + 1) & 1, ci - 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    store_state_tiles<T, MT, NT>(dHs + cb * K * V + e0, V, S, rowbase);
    float W[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) W[mt][nt][r] = 0.0f;
    if constexpr (sizeof(T) == 2) {
      // both operands k-major (row = chunk row i): fragments by ldmatrix.trans, each A fragment
      // loaded once for the NT column tiles and each B pair once for the MT row tiles
      static_assert(NT % 2 == 0, "n8 tiles in pairs");
#pragma unroll
      for (int ii = 0; ii < CH; ii += 16) {
        u32 af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          ldsm_x4_trans(af[mt], sX + (ii + 8 * (lane >> 4) + (lane & 7)) * LDQ + rowbase + mt * 16 +
                                    8 * ((lane >> 3) & 1));
#pragma unroll
        for (int nt = 0; nt < NT; nt += 2) {
          u32 bf[4];
          ldsm_x4_trans(bf, sVd + (ii + (lane & 15)) * LDV + (nt + (lane >> 4)) * 8);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma<T>::run(W[mt][nt], af[mt], bf);
            Mma<T>::run(W[mt][nt + 1], af[mt], bf + 2);
          }
        }
      }
    } else {
#pragma unroll
      for (int ii = 0; ii < CH; ii += 16)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            Tile<T, 1, LDQ, LDV, 1>::mma(W[mt][nt], sX + ii * LDQ + rowbase + mt * 16,
                                         sVd + ii * LDV + nt * 8, tf32);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const float g0 = sGam[rowbase + mt * 16 + gid], g1 = sGam[rowbase + mt * 16 + gid + 8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        S[mt][nt][0] = g0 * S[mt][nt][0] + scale * W[mt][nt][0];
        S[mt][nt][1] = g0 * S[mt][nt][1] + scale * W[mt][nt][1];
        S[mt][nt][2] = g1 * S[mt][nt][2] + scale * W[mt][nt][2];
        S[mt][nt][3] = g1 * S[mt][nt][3] + scale * W[mt][nt][3];
      }
    }
    __syncthreads();  // this stage is refilled by the issue two iterations on
  }
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int d = rowbase + mt * 16 + gid + ((r & 2) ? 8 : 0);
        const int e = e0 + nt * 8 + tig * 2 + (r & 1);
        dh0[(((size_t)n * H + h) * K + d) * V + e] = S[mt][nt][r];
      }
}

// ---------------------------------------------------------------- kernel 2 (local form): dq, dk, dg
// chunks: per chunk 4 ints (batch, first row within the batch row, length L in 1..64, unused).
// The local-form gate gradient (gla_bwd_dqk_local_*; the default reverse-cumsum kernel is
// bwd_dqk_tc below). One body of about 270 lines, phases in order (staging, dA, inter-chunk
// parts, intra parts, dg): the phases share one shared-memory layout and the per-thread
// accumulators, and keeping them in one function keeps the generated code fixed.
// The inter-chunk products of both dq/dk kernels over one staged 64-column slice of the value
// dimension (tiles [64][LD], k contiguous): warp rows mrow .. +15, output columns 8 nh .. +31:
//   accA += do @ v^T (column tiles at or left of the diagonal block only), accQ += do @ Hs^T,
//   accK += v @ dHs^T.
// 16-bit operands: fragments by ldmatrix (one instruction per A tile and per pair of B tiles, the
// A tiles loaded once for the four column tiles); f32: Tile's FFMA path (tf32 rounds operands).
template <typename T, int LD>
__device__ __forceinline__ void inter_products(float (&accA)[4][4], float (&accQ)[4][4], float (&accK)[4][4],
                                               const T* sDo, const T* sV, const T* sH, const T* sDH,
                                               int mrow, int nh, int tf32) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < CH; kk += 16) {
    if constexpr (sizeof(T) == 2) {
      u32 aDo[4], aV[4];
      ldsm_x4(aDo, sDo + (mrow + (lane & 15)) * LD + kk + (lane >> 4) * 8);
      ldsm_x4(aV, sV + (mrow + (lane & 15)) * LD + kk + (lane >> 4) * 8);
      const int bn = (lane & 7) + ((lane >> 4) << 3), bk = kk + ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int np = 0; np < 4; np += 2) {
        const int n0 = (nh + np) * 8;  // a multiple of 16, like mrow
        u32 bf[4];
        ldsm_x4(bf, sH + (n0 + bn) * LD + bk);
        Mma<T>::run(accQ[np], aDo, bf);
        Mma<T>::run(accQ[np + 1], aDo, bf + 2);
        ldsm_x4(bf, sDH + (n0 + bn) * LD + bk);
        Mma<T>::run(accK[np], aV, bf);
        Mma<T>::run(accK[np + 1], aV, bf + 2);
        if (n0 <= mrow) {
          ldsm_x4(bf, sV + (n0 + bn) * LD + bk);
          Mma<T>::run(accA[np], aDo, bf);
          Mma<T>::run(accA[np + 1], aDo, bf + 2);
        }
      }
    } else {
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int n0 = (nh + nt) * 8;
        if (n0 <= mrow + 15)
          Tile<T, LD, 1, 1, LD>::mma(accA[nt], sDo + mrow * LD + kk, sV + n0 * LD + kk, tf32);
        Tile<T, LD, 1, 1, LD>::mma(accQ[nt], sDo + mrow * LD + kk, sH + n0 * LD + kk, tf32);
        Tile<T, LD, 1, 1, LD>::mma(accK[nt], sV + mrow * LD + kk, sDH + n0 * LD + kk, tf32);
      }
    }
  }
}

// Store rows 0 .. L-1 of the f32 tiles sDQ, sDK ([64][LS]) to dq, dk (channels d0 .. d0 + 63),
// rounded to T, by 16-byte stores: thread = (rows tid / 8 and tid / 8 + 32, channels 8 (tid % 8)
// .. +7).
template <typename T, int LS>
__device__ __forceinline__ void store_dqk(T* __restrict__ dq, T* __restrict__ dk, const float* sDQ,
                                          const float* sDK, size_t row0, int H, int h, int K, int d0,
                                          int L, int tid) {
  const int c8 = 8 * (tid & 7);
#pragma unroll
  for (int p = 0; p < 2; ++p) {
    const int i = (tid >> 3) + 32 * p;
    if (i < L) {
      const size_t o = ((row0 + i) * H + h) * K + d0 + c8;
      store8<T>(dq + o, sDQ + i * LS + c8);
      store8<T>(dk + o, sDK + i * LS + c8);
    }
  }
}

// Issue (cp.async, one commit group) the staging of the value slice e0 .. e0 + 63 of do, v, Hs, dHs
// into the tiles [64][LD] at stg, in that order.
template <typename T, int LD>
__device__ __forceinline__ void stage_values(T* stg, const T* __restrict__ dout, const T* __restrict__ v,
                                             const T* __restrict__ Hs, const T* __restrict__ dHs,
                                             size_t row0, size_t cb, int H, int K, int V, int h, int d0,
                                             int L, int e0, int tid) {
  stage<T>(stg, LD, dout + (row0 * H + h) * V + e0, (size_t)H * V, CH, CH, L, tid, 256);
  stage<T>(stg + CH * LD, LD, v + (row0 * H + h) * V + e0, (size_t)H * V, CH, CH, L, tid, 256);
  stage<T>(stg + 2 * CH * LD, LD, Hs + (cb * K + d0) * V + e0, V, CH, CH, CH, tid, 256);
  stage<T>(stg + 3 * CH * LD, LD, dHs + (cb * K + d0) * V + e0, V, CH, CH, CH, tid, 256);
  cp_async_commit();
}

// The value loop of both dq/dk kernels: over the 64-column slices of V (the first one issued by
// the caller with stage_values before its q, k, g staging, so that the copy overlaps the cumsum;
// the others staged here), accumulate the inter-chunk products (inter_products, accumulators
// zeroed first) and each thread's partial rowsum of Hs * dHs (channel tid / 4, 16 columns per
// slice; TF32 operands with tf32), stored to sHd[tid]. The caller synchronises before reusing
// the staging area.
template <typename T, int LD>
__device__ __forceinline__ void value_pass(float (&accA)[4][4], float (&accQ)[4][4], float (&accK)[4][4],
                                           float* sHd, T* stg, const T* __restrict__ dout,
                                           const T* __restrict__ v, const T* __restrict__ Hs,
                                           const T* __restrict__ dHs, size_t row0, size_t cb, int H, int K,
                                           int V, int h, int d0, int L, int mrow, int nh, int tid, int tf32) {
  T* sDo = stg;
  T* sV = sDo + CH * LD;
  T* sH = sV + CH * LD;
  T* sDH = sH + CH * LD;
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int r = 0; r < 4; ++r) accA[nt][r] = accQ[nt][r] = accK[nt][r] = 0.0f;
  float hdp = 0.0f;
  for (int e0 = 0; e0 < V; e0 += CH) {
    if (e0 > 0) {
      __syncthreads();
      stage_values<T, LD>(stg, dout, v, Hs, dHs, row0, cb, H, K, V, h, d0, L, e0, tid);
    }
    cp_async_wait<0>();
    __syncthreads();
    inter_products<T, LD>(accA, accQ, accK, sDo, sV, sH, sDH, mrow, nh, tf32);
    {
      const int d = tid >> 2, e1 = (tid & 3) * 16;
      for (int e = e1; e < e1 + 16; ++e) {
        float hv = to_f(sH[d * LD + e]), dv = to_f(sDH[d * LD + e]);
        if (tf32) {
          hv = tf32r(hv);
          dv = tf32r(dv);
        }
        hdp = fmaf(hv, dv, hdp);
      }
    }
  }
  sHd[tid] = hdp;
}

template <typename T>
__device__ void bwd_dqk_local(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                              const T* __restrict__ dout, const float* __restrict__ g, int gate_cols,
                              const int* __restrict__ chunks, int Tlen, int H, int K, int V,
                              float scale, const T* __restrict__ Hs, const T* __restrict__ dHs,
                              const float* __restrict__ gamma, T* __restrict__ dq, T* __restrict__ dk,
                              T* __restrict__ dg, float* __restrict__ dgp, int tf32) {
  constexpr int PAD = Ld<T>::PAD, LD = CH + PAD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sF = reinterpret_cast<float*>(smem_raw);  // [64][64] cumsum
  float* sQ = sF + CH * CH;                          // [64][64] q (f32)
  float* sK = sQ + CH * CH;                          // [64][64] k (f32)
  float* sDA = sK + CH * CH;                         // [64][LDA_F] dA (scaled, j <= i)
  float* sHd = sDA + CH * LDA_F;                     // [256] partial rowsums of Hs * dHs
  float* sHdc = sHd + 256;                           // [64] rowsum(Hs * dHs)
  unsigned char* sZ = reinterpret_cast<unsigned char*>(sHdc + CH);  // [64][64] reset counts
  T* stg = reinterpret_cast<T*>(sZ + CH * CH);        // staging: do, v, Hs, dHs tiles [64][LD] (value_pass)
  float* sDQ = reinterpret_cast<float*>(stg);  // [64][64], aliases the staging (used after it)
  float* sDK = sDQ + CH * CH;
  // after the staging: per sub-chunk block sums of q dq_inter and k dk_inter, and the
  // full-block snapshots X_{I,<m} (slots: (I=2,m=1), (I=3,m=1), (I=3,m=2)), [4][64], [4][64], [3][64]
  float* sBA = reinterpret_cast<float*>(stg + 4 * CH * LD);
  float* sBB = sBA + 4 * CH;
  float* sX = sBB + 4 * CH;

  const int c = blockIdx.x, h = blockIdx.y, d0 = blockIdx.z * CH;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = chunks[4 * c], t0 = chunks[4 * c + 1], L = chunks[4 * c + 2];
  const size_t row0 = (size_t)b * Tlen + t0;
  const size_t cb = (size_t)c * H + h;

  stage_values<T, LD>(stg, dout, v, Hs, dHs, row0, cb, H, K, V, h, d0, L, 0, tid);
  stage_qkg<T, CH>(sF, sQ, sK, q, k, g, gate_cols, row0, H, h, K, d0, L, tid);
  __syncthreads();
  if (tid < CH) {
    float F = 0.0f;
    int Z = 0;
    for (int r = 0; r < CH; ++r) {
      const float x = sF[r * CH + tid];
      cumsum_step(x, F, Z);
      sF[r * CH + tid] = F;
      sZ[r * CH + tid] = (unsigned char)Z;
    }
  }

  // products over the value dimension, 64 columns at a time; warp w: rows 16 (w & 3) .. +15,
  // output columns 32 (w >> 2) .. +31
  const int mrow = (warp & 3) * 16, nh = (warp >> 2) * 4;
  float accA[4][4], accQ[4][4], accK[4][4];
  value_pass<T, LD>(accA, accQ, accK, sHd, stg, dout, v, Hs, dHs, row0, cb, H, K, V, h, d0, L, mrow, nh, tid, tf32);
  __syncthreads();  // staging is free from here on (sDQ / sDK alias it)
  const int Lm = L - 1;
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = mrow + gid + ((r & 2) ? 8 : 0);
      const int j = (nh + nt) * 8 + tig * 2 + (r & 1);  // key row (dA) or channel (dq, dk)
      // dA in f32 (TF32 with tf32: rounding point `da`), as in bwd_dqk_tc
      const float x = (j <= i) ? accA[nt][r] * scale : 0.0f;
      sDA[i * LDA_F + j] = tf32 ? tf32r(x) : x;
      const float Fi = sF[i * CH + j];
      const int Zi = sZ[i * CH + j];
      const float e0v = (Zi == 0) ? exp_nonpos<true>(Fi) : 0.0f;
      sDQ[i * CH + j] = accQ[nt][r] * e0v * scale;
      const float el = decay<true>(Fi, Zi, sF[Lm * CH + j], sZ[Lm * CH + j]);
      sDK[i * CH + j] = accK[nt][r] * el;
    }
  __syncthreads();
  if (tid < CH) {
    sHdc[tid] = (sHd[4 * tid] + sHd[4 * tid + 1]) + (sHd[4 * tid + 2] + sHd[4 * tid + 3]);
  }
  __syncthreads();
  // intra-chunk parts (FFMA): thread = (channel d, sub-chunk I): dq of query block I and dk of
  // key block I (disjoint rows; off-diagonal work I + (3 - I) = 3 blocks for every thread).
  //
  // The gate gradient in the local form (good relative accuracy for tiny alpha): with
  // W_rs = q_r k_s dA_rs D(s, r) (s < r), every term below carries the factor alpha_t:
  //   dg_t = gamma rowsum(Hs dHs) + sum_{r >= t} q_r dq_inter_r + sum_{s < t} k_s dk_inter_s
  //        + sum_{s < t <= r} W_rs,
  // the pairs split by sub-chunk (t in block m): full blocks J < m < I (snapshots X_{I,<m} of the
  // dq accumulator), r in m with s in J < m (suffix of q dq_off), s in m with r in I > m (prefix
  // of k dk_off), both in m (elementwise). Plain sums only: no partial sum is ever subtracted.
  // The row loops below are unrolled so that acc[] and dl[] stay in registers: a
  // rolled loop indexes them at run time, which puts them in local memory.
  const int d = tid & 63, I = tid >> 6;
  float dl[16];  // the local dg partial of each row of block I
#pragma unroll
  for (int r = 0; r < 16; ++r) dl[r] = 0.0f;
  float blkA = 0.0f, blkB = 0.0f;
  {
    {
      // dq, query block I, anchor a = its first row
      {
        const int a = 16 * I;
        const float Fa = sF[a * CH + d];
        const int Za = sZ[a * CH + d];
        float acc[16], qdec[16];
#pragma unroll
        for (int r = 0; r < 16; ++r) acc[r] = 0.0f;
        if (I >= 2) {
#pragma unroll
          for (int r = 0; r < 16; ++r) {
            const int i = a + r;
            qdec[r] = rnd<T>(sQ[i * CH + d] * decay<true>(Fa, Za, sF[i * CH + d], sZ[i * CH + d]));
          }
        }
        for (int jb = 0; jb < a; jb += 16) {
          for (int j = jb; j < jb + 16; ++j) {
            const float kf = rnd<T>(sK[j * CH + d] * decay<true>(sF[j * CH + d], sZ[j * CH + d], Fa, Za));
#pragma unroll
            for (int r = 0; r < 16; ++r) acc[r] = fmaf(sDA[(a + r) * LDA_F + j], kf, acc[r]);
          }
          if (jb + 16 < a) {
            // acc holds key blocks J < m = jb / 16 + 1 < I: X_{I,<m} = sum_r q_r D(a, r) acc_r
            float x = 0.0f;
#pragma unroll
            for (int r = 0; r < 16; ++r) x = fmaf(qdec[r], acc[r], x);
            sX[((I == 2) ? 0 : jb / 16 + 1) * CH + d] = x;
          }
        }
#pragma unroll
        for (int r = 0; r < 16; ++r) {
          const int i = a + r;
          const float Fi = sF[i * CH + d];
          const int Zi = sZ[i * CH + d];
          float x = sDQ[i * CH + d];
          blkA = fmaf(sQ[i * CH + d], x, blkA);
          if (I > 0) x += acc[r] * decay<true>(Fa, Za, Fi, Zi);
          dl[r] = sQ[i * CH + d] * x;  // q (dq_inter + dq_off)
          for (int j = a; j <= i; ++j)
            x += sDA[i * LDA_F + j] * (sK[j * CH + d] * decay<true>(sF[j * CH + d], sZ[j * CH + d], Fi, Zi));
          sDQ[i * CH + d] = x;
        }
        {
#pragma unroll
          for (int r = 14; r >= 0; --r) dl[r] += dl[r + 1];  // suffix over r >= t in the block
        }
      }
      // dk, key block J = I, anchor bb = its last row (padded rows carry g = 0: same decays as
      // the last valid row)
      {
        const int j0 = 16 * I, bb = j0 + 15;
        const float Fb = sF[bb * CH + d];
        const int Zb = sZ[bb * CH + d];
        float acc[16];
#pragma unroll
        for (int r = 0; r < 16; ++r) acc[r] = 0.0f;
        for (int i = bb + 1; i < CH; ++i) {
          const float qf = rnd<T>(sQ[i * CH + d] * decay<true>(Fb, Zb, sF[i * CH + d], sZ[i * CH + d]));
#pragma unroll
          for (int r = 0; r < 16; ++r) acc[r] = fmaf(sDA[i * LDA_F + j0 + r], qf, acc[r]);
        }
        float runB = 0.0f;
#pragma unroll
        for (int r = 0; r < 16; ++r) {
          const int j = j0 + r;
          const float Fj = sF[j * CH + d];
          const int Zj = sZ[j * CH + d];
          float x = sDK[j * CH + d];
          blkB = fmaf(sK[j * CH + d], x, blkB);
          if (I < 3) x += acc[r] * decay<true>(Fj, Zj, Fb, Zb);
          {
            dl[r] += runB;  // prefix over s < t in the block of k (dk_inter + dk_off)
            runB = fmaf(sK[j * CH + d], x, runB);
          }
          for (int i = j; i <= bb; ++i)
            x += sDA[i * LDA_F + j] * (sQ[i * CH + d] * decay<true>(Fj, Zj, sF[i * CH + d], sZ[i * CH + d]));
          sDK[j * CH + d] = x;
        }
      }
      {
        // pairs inside block I: for each key row s, suffix sums over r > s of W_rs go to rows t = r
        const int j0 = 16 * I;
        for (int s = 0; s < 15; ++s) {
          const int js = j0 + s;
          const float Fs = sF[js * CH + d], ks = sK[js * CH + d];
          const int Zs = sZ[js * CH + d];
          float suf = 0.0f;
#pragma unroll
          for (int r = 15; r >= 1; --r) {
            if (r > s) {
              const int ir = j0 + r;
              const float w = sDA[ir * LDA_F + js] *
                              (sQ[ir * CH + d] * (ks * decay<true>(Fs, Zs, sF[ir * CH + d], sZ[ir * CH + d])));
              suf += w;
              dl[r] += suf;
            }
          }
        }
        sBA[I * CH + d] = blkA;
        sBB[I * CH + d] = blkB;
      }
    }
  }
  __syncthreads();
  {
    // dg of the rows of block I: the state term, the blocks after (q dq_inter) and before
    // (k dk_inter), the full off-diagonal blocks, then the row's own partial
    float aft = 0.0f, bef = 0.0f;
    for (int J = 3; J > I; --J) aft += sBA[J * CH + d];
    for (int J = 0; J < I; ++J) bef += sBB[J * CH + d];
    const float full = (I == 1) ? sX[d] + sX[CH + d] : (I == 2) ? sX[2 * CH + d] : 0.0f;
    const float base = (gamma[cb * K + d0 + d] * sHdc[d] + aft) + (bef + full);
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int i = 16 * I + r;
      if (i < L) {
        const float x = base + dl[r];
        const size_t o = ((row0 + i) * H + h) * K + d0 + d;
        if (gate_cols == 1)
          dgp[o] = x;
        else
          dg[o] = from_f<T>(x);
      }
    }
  }
  store_dqk<T, CH>(dq, dk, sDQ, sDK, row0, H, h, K, d0, L, tid);
}

// The diagonal 16 x 16 block of one channel, rows in registers: for each pair j <= i, the decay
// D(j, i) once, then gq_i += dA_ij k_j D(j, i) and gk_j += dA_ij q_i D(j, i) (dA row i of the block
// read by 16-byte loads, one address for the warp). FLAT: the caller knows that the block has no
// reset on this channel, so D(j, i) = exp_nonpos(F_i - F_j) without the reset-count test.
template <bool FLAT>
__device__ __forceinline__ void diag_pairs(float (&gq)[16], float (&gk)[16], const float (&F)[16],
                                           const int (&Z)[16], const float (&qv)[16],
                                           const float (&kv)[16], const float* dAd) {
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    alignas(16) float da[16];
#pragma unroll
    for (int n = 0; n <= i / 4; ++n)
      *reinterpret_cast<float4*>(da + n * 4) = reinterpret_cast<const float4*>(dAd + i * 16)[n];
#pragma unroll
    for (int j = 0; j <= i; ++j) {
      const float a = da[j];
      const float e = FLAT ? exp_nonpos<true>(F[i] - F[j]) : decay<true>(F[j], Z[j], F[i], Z[i]);
      gq[i] = fmaf(a, kv[j] * e, gq[i]);
      gk[j] = fmaf(a, qv[i] * e, gk[j]);
    }
  }
}

// ---------------------------------------------------------------- kernel 2': dq, dk, dg on tensor cores
// The default (reverse-cumsum dg) dq/dk kernel. Same inputs, outputs, grid and staging as
// bwd_dqk_local
// above; the intra-chunk parts are restructured:
//  - dA = scale * do @ v^T is not rounded (TF32 when tf32 is set: rounding point `da`): the
//    off-diagonal tensor-core products of bf16 / f16 take it as two operands hi = rnd(dA) and
//    lo = rnd(dA - hi) (|dA - hi - lo| <= 2^-16 |dA| in bf16; one f32 operand otherwise), the
//    diagonal blocks read an f32 copy. (One rounded dA made dq, dk up to 2.5x and dg up to 3.5x
//    less accurate: BENCHMARKS.md G8);
//  - off-diagonal sub-blocks on tensor cores (mma.sync, f32 accumulation), with the anchored factors
//    of the CPU twin (reference/src/chunked/intra.rs, Intra::backward), rounded to the input dtype
//    as the forward rounds them (rounding points `offdiag_k`, `offdiag_q`; f32 and TF32: not
//    rounded, FFMA):
//      dq_I += D(a, i) * (dA[I, <a] @ kf_a),   kf_a[j] = rnd(k_j * D(j, a)),  a = first row of I;
//      dk_J += D(j, b) * (dA[>b, J]^T @ qf_b), qf_b[i] = rnd(q_i * D(b, i)),  b = last row of J;
//    both factors are <= 1 in magnitude times |k| / |q| (every exponent <= 0);
//  - diagonal sub-blocks elementwise in f32 (j <= i only), each pair's decay D(j, i) evaluated once
//    and used for both dq_i and dk_j, with the block's rows held in registers.
// Shared memory: sF, sQ, sK f32 [64][LS]; sDA T [64][LD] (hi); sDAd f32 [4][16][16] (the diagonal
// blocks); partial sums (256 + 4 x 64 f32); sZ; the staging area 4 x [64][LD] T, reused after the
// inter-chunk products for the transposed factors kfT / qfT T [64][LDF] and lo(dA) T [64][LD], and
// then for sDQ / sDK f32 [64][LS].
template <typename T>
__device__ void bwd_dqk_tc(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                           const T* __restrict__ dout, const float* __restrict__ g, int gate_cols,
                           const int* __restrict__ chunks, int Tlen, int H, int K, int V, float scale,
                           const T* __restrict__ Hs, const T* __restrict__ dHs,
                           const float* __restrict__ gamma, T* __restrict__ dq, T* __restrict__ dk,
                           T* __restrict__ dg, float* __restrict__ dgp, int tf32) {
  constexpr int PAD = Ld<T>::PAD, LD = CH + PAD, LDF = 96 + PAD;
  constexpr bool SPLIT = sizeof(T) == 2;  // dA as two 16-bit terms (f32 / TF32: one operand)
  static_assert(!SPLIT || (2 * CH * LDF + CH * LD) * sizeof(T) <= 4 * CH * LD * sizeof(T),
                "kfT, qfT and lo(dA) fit in the staging area");
  // Row stride of sF, sQ, sK, sDQ, sDK (f32) and sZ (u8): 68, not 64, so that the (row, column)
  // fragments of the mma layouts (lanes: 8 rows x 4 column pairs) meet at most 2-way bank
  // conflicts, not 8-way. sDQ + sDK (2 x 64 x 68 f32) still fit in the staging area.
  constexpr int LS = CH + 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sF = reinterpret_cast<float*>(smem_raw);  // [64][LS] cumsum
  float* sQ = sF + CH * LS;                          // [64][LS] q (f32)
  float* sK = sQ + CH * LS;                          // [64][LS] k (f32)
  T* sDA = reinterpret_cast<T*>(sK + CH * LS);       // [64][LD] hi(dA) (off-diagonal blocks, j < i)
  float* sDAd = reinterpret_cast<float*>(sDA + CH * LD);  // [4][16][16] dA of the diagonal blocks
  float* sHd = sDAd + 4 * 256;                       // [256] partial rowsums of Hs * dHs
  float* sKsP = sHd + 256;                           // [4][64] per row block: sum_j k_j dk_inter_j
  unsigned char* sZ = reinterpret_cast<unsigned char*>(sKsP + 4 * CH);  // [64][LS] reset counts
  T* stg = reinterpret_cast<T*>(sZ + CH * LS);        // staging: do, v, Hs, dHs tiles [64][LD] (value_pass)
  T* kfT = stg;              // [64 channels][LDF]: anchor a = 16 at cols 0..15, 32 at 16..47, 48 at 48..95
  T* qfT = kfT + CH * LDF;   // [64 channels][LDF]: anchor b = 15 (rows 16..63) at cols 0..47,
                             //   31 (rows 32..63) at 48..79, 47 (rows 48..63) at 80..95
  T* sDAlo = qfT + CH * LDF;  // [64][LD] lo(dA) = rnd(dA - hi(dA)) (16-bit inputs), off-diagonal
  float* sDQ = reinterpret_cast<float*>(stg);  // [64][LS], after the off-diagonal products
  float* sDK = sDQ + CH * LS;

  const int c = blockIdx.x, h = blockIdx.y, d0 = blockIdx.z * CH;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = chunks[4 * c], t0 = chunks[4 * c + 1], L = chunks[4 * c + 2];
  const size_t row0 = (size_t)b * Tlen + t0;
  const size_t cb = (size_t)c * H + h;

  stage_values<T, LD>(stg, dout, v, Hs, dHs, row0, cb, H, K, V, h, d0, L, 0, tid);
  stage_qkg<T, LS>(sF, sQ, sK, q, k, g, gate_cols, row0, H, h, K, d0, L, tid);
  __syncthreads();
  if (tid < CH) {
    float F = 0.0f;
    int Z = 0;
    for (int r = 0; r < CH; ++r) {
      const float x = sF[r * LS + tid];
      cumsum_step(x, F, Z);
      sF[r * LS + tid] = F;
      sZ[r * LS + tid] = (unsigned char)Z;
    }
  }

  // inter-chunk products over the value dimension, 64 columns at a time; warp w: rows
  // 16 (w & 3) .. +15, output columns 32 (w >> 2) .. +31
  const int I = warp & 3, mrow = 16 * I, nh = (warp >> 2) * 4;
  float accA[4][4], accQ[4][4], accK[4][4];
  value_pass<T, LD>(accA, accQ, accK, sHd, stg, dout, v, Hs, dHs, row0, cb, H, K, V, h, d0, L, mrow, nh, tid, tf32);
  __syncthreads();  // the staging area is free from here on
  // rnd(dA) (j <= i), and the anchored off-diagonal factors, transposed [channel][row]
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = mrow + gid + half * 8, j = (nh + nt) * 8 + tig * 2;
      float x = (j <= i) ? accA[nt][2 * half] * scale : 0.0f;
      float y = (j + 1 <= i) ? accA[nt][2 * half + 1] * scale : 0.0f;
      if (tf32) {
        x = tf32r(x);
        y = tf32r(y);
      }
      if ((j >> 4) == I) {
        // diagonal block I: f32 for the elementwise products
        sDAd[I * 256 + (i - mrow) * 16 + (j - mrow)] = x;
        sDAd[I * 256 + (i - mrow) * 16 + (j + 1 - mrow)] = y;
      } else if (SPLIT) {
        // off-diagonal: dA = hi + lo, two 16-bit tensor-core operands (|dA - hi - lo| <=
        // 2^-16 |dA| for bf16); a non-finite hi (f16 overflow) keeps lo = 0
        const T hx = from_f<T>(x), hy = from_f<T>(y);
        const float lx = finite_f(to_f(hx)) ? x - to_f(hx) : 0.0f;
        const float ly = finite_f(to_f(hy)) ? y - to_f(hy) : 0.0f;
        store2<T>(sDA + i * LD + j, x, y);
        store2<T>(sDAlo + i * LD + j, lx, ly);
      } else {
        store2<T>(sDA + i * LD + j, x, y);
      }
    }
  {
    // thread: channel d, columns c0, c0 + 4, ... (compile-time trip counts); each anchor's (F, Z)
    // read once per segment
    const int d = tid & 63, c0 = tid >> 6;
#pragma unroll
    for (int seg = 0; seg < 3; ++seg) {
      // kf: columns lo .. hi-1 -> anchor a = 16 (seg + 1), key rows j = col - lo < a
      const int a = 16 * (seg + 1), lo = seg == 0 ? 0 : (seg == 1 ? 16 : 48), hi = seg == 0 ? 16 : (seg == 1 ? 48 : 96);
      const float Fa = sF[a * LS + d];
      const int Za = sZ[a * LS + d];
#pragma unroll
      for (int n = 0; n < (hi - lo) / 4; ++n) {
        const int col = lo + c0 + 4 * n, j = col - lo;
        kfT[d * LDF + col] = from_f<T>(sK[j * LS + d] * decay<true>(sF[j * LS + d], sZ[j * LS + d], Fa, Za));
      }
    }
#pragma unroll
    for (int seg = 0; seg < 3; ++seg) {
      // qf: columns lo .. hi-1 -> anchor b = 16 seg + 15, query rows i = col - lo + b + 1 > b
      const int bb = 16 * seg + 15, lo = seg == 0 ? 0 : (seg == 1 ? 48 : 80), hi = seg == 0 ? 48 : (seg == 1 ? 80 : 96);
      const float Fb = sF[bb * LS + d];
      const int Zb = sZ[bb * LS + d];
#pragma unroll
      for (int n = 0; n < (hi - lo) / 4; ++n) {
        const int col = lo + c0 + 4 * n, i = col - lo + bb + 1;
        qfT[d * LDF + col] = from_f<T>(sQ[i * LS + d] * decay<true>(Fb, Zb, sF[i * LS + d], sZ[i * LS + d]));
      }
    }
  }
  __syncthreads();
  // off-diagonal sub-blocks: warp w takes the dq rows of query block I = w & 3 (key blocks < I) and
  // the dk rows of key block J = I (query blocks > J), channels 32 (w >> 2) .. +31
  float dqo[4][4], dko[4][4];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int r = 0; r < 4; ++r) dqo[nt][r] = dko[nt][r] = 0.0f;
  {
    const int off = I == 1 ? 0 : (I == 2 ? 16 : 48);
    for (int kk = 0; kk < mrow; kk += 16)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        Tile<T, LD, 1, 1, LDF>::mma(dqo[nt], sDA + mrow * LD + kk, kfT + (nh + nt) * 8 * LDF + off + kk, 0);
        if (SPLIT)
          Tile<T, LD, 1, 1, LDF>::mma(dqo[nt], sDAlo + mrow * LD + kk, kfT + (nh + nt) * 8 * LDF + off + kk, 0);
      }
    const int offq = I == 0 ? 0 : (I == 1 ? 48 : 80);
    for (int kk = 0; kk < 48 - mrow; kk += 16)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        Tile<T, 1, LD, 1, LDF>::mma(dko[nt], sDA + (mrow + 16 + kk) * LD + mrow,
                                    qfT + (nh + nt) * 8 * LDF + offq + kk, 0);
        if (SPLIT)
          Tile<T, 1, LD, 1, LDF>::mma(dko[nt], sDAlo + (mrow + 16 + kk) * LD + mrow,
                                      qfT + (nh + nt) * 8 * LDF + offq + kk, 0);
      }
  }
  // inter + off-diagonal parts (registers), and the per-row-block sums of k dk_inter
  float kpart[4][2];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    kpart[nt][0] = kpart[nt][1] = 0.0f;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = mrow + gid + ((r & 2) ? 8 : 0);
      const int d = (nh + nt) * 8 + tig * 2 + (r & 1);
      const float Fi = sF[i * LS + d];
      const int Zi = sZ[i * LS + d];
      float x = accQ[nt][r] * ((Zi == 0) ? exp_nonpos<true>(Fi) : 0.0f) * scale;
      if (I > 0) x += dqo[nt][r] * decay<true>(sF[mrow * LS + d], sZ[mrow * LS + d], Fi, Zi);
      accQ[nt][r] = x;
      const float kin = accK[nt][r] * decay<true>(Fi, Zi, sF[(L - 1) * LS + d], sZ[(L - 1) * LS + d]);
      kpart[nt][r & 1] = fmaf(sK[i * LS + d], kin, kpart[nt][r & 1]);
      float y = kin;
      if (I < 3) y += dko[nt][r] * decay<true>(Fi, Zi, sF[(mrow + 15) * LS + d], sZ[(mrow + 15) * LS + d]);
      accK[nt][r] = y;
    }
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float s = kpart[nt][e];
      s += __shfl_xor_sync(0xffffffffu, s, 4);
      s += __shfl_xor_sync(0xffffffffu, s, 8);
      s += __shfl_xor_sync(0xffffffffu, s, 16);
      kpart[nt][e] = s;
    }
  __syncthreads();  // kfT / qfT are dead: sDQ / sDK take their place
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const int j = (nh + nt) * 8 + tig * 2;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = mrow + gid + half * 8;
      sDQ[i * LS + j] = accQ[nt][2 * half];
      sDQ[i * LS + j + 1] = accQ[nt][2 * half + 1];
      sDK[i * LS + j] = accK[nt][2 * half];
      sDK[i * LS + j + 1] = accK[nt][2 * half + 1];
    }
    if (gid == 0) {
      sKsP[I * CH + j] = kpart[nt][0];
      sKsP[I * CH + j + 1] = kpart[nt][1];
    }
  }
  __syncthreads();
  // diagonal sub-blocks: thread = (channel d, block I2), the block's 16 rows in registers; each
  // pair (i, j <= i) evaluates its decay once for dq_i and dk_j
  {
    const int d = tid & 63, I2 = tid >> 6, r0 = 16 * I2;
    float F[16], qv[16], kv[16], gq[16], gk[16];
    int Z[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      F[r] = sF[(r0 + r) * LS + d];
      Z[r] = sZ[(r0 + r) * LS + d];
      qv[r] = sQ[(r0 + r) * LS + d];
      kv[r] = sK[(r0 + r) * LS + d];
      gq[r] = gk[r] = 0.0f;
    }
    // Z is non-decreasing down the rows: equal first and last counts mean no reset in the block,
    // and every pair takes exp_nonpos without the reset test (the same value decay gives)
    if (Z[0] == Z[15])
      diag_pairs<true>(gq, gk, F, Z, qv, kv, sDAd + I2 * 256);
    else
      diag_pairs<false>(gq, gk, F, Z, qv, kv, sDAd + I2 * 256);
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      sDQ[(r0 + r) * LS + d] += gq[r];
      sDK[(r0 + r) * LS + d] += gk[r];
    }
  }
  __syncthreads();
  if (tid < CH) {
    // gate gradient: chunk reverse sum plus the state terms (one thread per channel)
    const float ks = (sKsP[tid] + sKsP[CH + tid]) + (sKsP[2 * CH + tid] + sKsP[3 * CH + tid]);
    const float hd = (sHd[4 * tid] + sHd[4 * tid + 1]) + (sHd[4 * tid + 2] + sHd[4 * tid + 3]);
    float acc = gamma[cb * K + d0 + tid] * hd + ks;
    for (int i = L - 1; i >= 0; --i) {
      acc += sQ[i * LS + tid] * sDQ[i * LS + tid] - sK[i * LS + tid] * sDK[i * LS + tid];
      const size_t o = ((row0 + i) * H + h) * K + d0 + tid;
      if (gate_cols == 1)
        dgp[o] = acc;
      else
        dg[o] = from_f<T>(acc);
    }
  }
  store_dqk<T, LS>(dq, dk, sDQ, sDK, row0, H, h, K, d0, L, tid);
}

// ---------------------------------------------------------------- kernel 3: dv
template <typename T>
__device__ void bwd_dv(const T* __restrict__ dout, const int* __restrict__ chunks, int Tlen, int H,
                       int K, int V, const T* __restrict__ A, const T* __restrict__ kgt,
                       const T* __restrict__ dHs, T* __restrict__ dv, int tf32) {
  constexpr int PAD = Ld<T>::PAD, LD = CH + PAD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sA = reinterpret_cast<T*>(smem_raw);  // A [i][j]
  T* sDo = sA + CH * LD;                    // do [i][e]
  T* sKt = sDo + CH * LD;                   // kgT [d][j]
  T* sDH = sKt + CH * LD;                   // dHs [d][e]
  const int c = blockIdx.x, h = blockIdx.y, e0 = blockIdx.z * CH;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = chunks[4 * c], t0 = chunks[4 * c + 1], L = chunks[4 * c + 2];
  const size_t row0 = (size_t)b * Tlen + t0;
  const size_t cb = (size_t)c * H + h;
  stage<T>(sA, LD, A + cb * CH * CH, CH, CH, CH, CH, tid, 128);
  stage<T>(sDo, LD, dout + (row0 * H + h) * V + e0, (size_t)H * V, CH, CH, L, tid, 128);
  cp_async_commit();
  float acc[8][4];
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[nt][r] = 0.0f;
  for (int dd0 = 0; dd0 < K; dd0 += CH) {
    __syncthreads();
    stage<T>(sKt, LD, kgt + (cb * K + dd0) * CH, CH, CH, CH, CH, tid, 128);
    stage<T>(sDH, LD, dHs + (cb * K + dd0) * V + e0, V, CH, CH, CH, tid, 128);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < CH; kk += 16)
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
        Tile<T, 1, LD, LD, 1>::mma(acc[nt], sKt + kk * LD + warp * 16, sDH + kk * LD + nt * 8, tf32);
  }
  // A^T @ do: rows j of this warp take i >= j only (A is zero above the diagonal)
  for (int ii = warp * 16; ii < CH; ii += 16)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
      Tile<T, 1, LD, LD, 1>::mma(acc[nt], sA + ii * LD + warp * 16, sDo + ii * LD + nt * 8, tf32);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int j = warp * 16 + gid + half * 8;
    if (j < L) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
        store2<T>(dv + ((row0 + j) * H + h) * V + e0 + nt * 8 + tig * 2, acc[nt][2 * half],
                  acc[nt][2 * half + 1]);
    }
  }
}

// ---------------------------------------------------------------- kernel 4: scalar-gate dg
template <typename T>
__device__ void bwd_dg_reduce(const float* __restrict__ dgp, int rows, int K, T* __restrict__ dg) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float s = 0.0f;
  for (int d = 0; d < K; ++d) s += dgp[(size_t)r * K + d];
  dg[r] = from_f<T>(s);
}

// ---------------------------------------------------------------- entry points
#define BWD_STATE(NAME, T, K)                                                                     \
  extern "C" __global__ void __launch_bounds__(128) NAME(                                         \
      const T* dout, const float* dht, const int* seqs, int Tlen, int H, int V, float scale,      \
      const T* qg, const float* gamma, T* dHs, float* dh0, int tf32) {                            \
    bwd_state<T, K>(dout, dht, seqs, Tlen, H, V, scale, qg, gamma, dHs, dh0, tf32);               \
  }
#define BWD_DQK_LOCAL(NAME, T)                                                                    \
  extern "C" __global__ void __launch_bounds__(256) NAME(                                         \
      const T* q, const T* k, const T* v, const T* dout, const float* g, int gate_cols,           \
      const int* chunks, int Tlen, int H, int K, int V, float scale, const T* Hs, const T* dHs,   \
      const float* gamma, T* dq, T* dk, T* dg, float* dgp, int tf32) {                            \
    bwd_dqk_local<T>(q, k, v, dout, g, gate_cols, chunks, Tlen, H, K, V, scale, Hs, dHs, gamma, dq, dk, \
                     dg, dgp, tf32);                                                                  \
  }
#define BWD_DQK_TC(NAME, T)                                                                       \
  extern "C" __global__ void __launch_bounds__(256, 2) NAME(                                      \
      const T* q, const T* k, const T* v, const T* dout, const float* g, int gate_cols,           \
      const int* chunks, int Tlen, int H, int K, int V, float scale, const T* Hs, const T* dHs,   \
      const float* gamma, T* dq, T* dk, T* dg, float* dgp, int tf32) {                            \
    bwd_dqk_tc<T>(q, k, v, dout, g, gate_cols, chunks, Tlen, H, K, V, scale, Hs, dHs, gamma, dq,  \
                  dk, dg, dgp, tf32);                                                             \
  }
#define BWD_DV(NAME, T)                                                                           \
  extern "C" __global__ void __launch_bounds__(128) NAME(                                         \
      const T* dout, const int* chunks, int Tlen, int H, int K, int V, const T* A, const T* kgt,  \
      const T* dHs, T* dv, int tf32) {                                                            \
    bwd_dv<T>(dout, chunks, Tlen, H, K, V, A, kgt, dHs, dv, tf32);                                \
  }
#define BWD_DG(NAME, T)                                                                           \
  extern "C" __global__ void __launch_bounds__(128) NAME(const float* dgp, int rows, int K, T* dg) { \
    bwd_dg_reduce<T>(dgp, rows, K, dg);                                                           \
  }

BWD_STATE(gla_bwd_state_bf16_k64, bf16_t, 64)
BWD_STATE(gla_bwd_state_bf16_k128, bf16_t, 128)
BWD_STATE(gla_bwd_state_bf16_k256, bf16_t, 256)
BWD_STATE(gla_bwd_state_f16_k64, f16_t, 64)
BWD_STATE(gla_bwd_state_f16_k128, f16_t, 128)
BWD_STATE(gla_bwd_state_f16_k256, f16_t, 256)
BWD_STATE(gla_bwd_state_f32_k64, float, 64)
BWD_STATE(gla_bwd_state_f32_k128, float, 128)
BWD_STATE(gla_bwd_state_f32_k256, float, 256)
BWD_DQK_TC(gla_bwd_dqk_bf16, bf16_t)
BWD_DQK_TC(gla_bwd_dqk_f16, f16_t)
BWD_DQK_TC(gla_bwd_dqk_f32, float)
BWD_DQK_LOCAL(gla_bwd_dqk_local_bf16, bf16_t)
BWD_DQK_LOCAL(gla_bwd_dqk_local_f16, f16_t)
BWD_DQK_LOCAL(gla_bwd_dqk_local_f32, float)
BWD_DV(gla_bwd_dv_bf16, bf16_t)
BWD_DV(gla_bwd_dv_f16, f16_t)
BWD_DV(gla_bwd_dv_f32, float)
BWD_DG(gla_bwd_dg_reduce_bf16, bf16_t)
BWD_DG(gla_bwd_dg_reduce_f16, f16_t)
BWD_DG(gla_bwd_dg_reduce_f32, float)
