// glacheck GLA chunked forward kernels (compiled at run time by NVRTC, with the shared prelude
// gla_common.cuh; no CUDA headers needed).
//
// Two kernels (docs/math.md §3, chunk C = 64, sub-chunk c = 16):
//
//  gla_fwd_intra_<T>  (f32; bf16 / f16 take gla_fwd_intra_tc_<T>, below the first, which computes
//     the same outputs with A's off-diagonal sub-blocks on tensor cores from rounded factors)
//     grid (num_chunks, H), 256 threads. One (chunk, head) per block:
//     - chunk-local inclusive cumsum of the (natural-log) gates, F = sequential f32 sum over the
//       chunk's rows (as the CPU twin), with exact resets: a row whose gate is -inf starts a new
//       segment (Z += 1, F = 0). The decay from row x to row y >= x is
//           D(x, y) = 0                      if a reset lies in (x, y]  (Z_y != Z_x)
//                   = expf(min(F_y - F_x, 0)) otherwise
//       (the min is a no-op mathematically: F is non-increasing inside a segment; it guards the
//       "every exponent <= 0" rule against any rounding). Decay from the chunk start to y:
//       D(start, y) = Z_y == 0 ? expf(min(F_y, 0)) : 0.  (exp is evaluated as exp2 of the
//       log2-scaled exponent, see exp_nonpos in gla_common.cuh: ex2.approx.ftz in the default
//       *_fast kernels, exp2f in the others; the twin's exact-rounded exp differs by a few ulp,
//       counted in n_acc.)
//     - writes qg = rnd(q * D(start, i))            [chunk][head][64][K]   (rows >= L: 0)
//              kgT = rnd(k_j * D(j, last))          [chunk][head][K][64]   (transposed; cols >= L: 0)
//              gamma = D(start, last) (f32)         [chunk][head][K]
//              A = rnd(scale * sum_d q_i k_j D(j,i)) [chunk][head][64][64] (j > i: 0)
//       A's off-diagonal 16x16 blocks (I > J) use fla's anchor a = first row of block I:
//           (q_i * D(a, i)) . (k_j * D(j, a)), both factors in [0, 1], f32 (no rounding);
//       diagonal blocks: per (row, channel) either the factored product with anchor a or the
//       elementwise form, j <= i only (no masked exponent); the choice for row i depends on rows
//       <= i only, so o_i never depends on later tokens, bit for bit (see DIAG_SAFE).
//  gla_fwd_state_<T>_k<K>_v<BV>[_w8]  grid (V / BV, H, N), 128 threads (_w8: 256, 8 warps,
//     K >= 128; the layouts (K, BV, warps) are listed on the host as gla_gpu::STATE_LAYOUTS; all
//     give the same arithmetic in the same order, see gla_fwd_state_mma). One (value block, head,
//     sequence) per block, walking the sequence's chunks in order with the fp32 state in registers:
//           o_chunk = rnd( scale * (qg @ rnd(S)) + A @ v );   S = gamma * S + kgT @ v
//     and, when the backward follows (hs != null), the chunk start states Hs[p] = rnd(S before
//     chunk p) [chunk][head][K][V], which the backward reads instead of recomputing them.
//     bf16/f16: mma.sync m16n8k16 (f32 accumulate). f32: FFMA (see gla_fwd_state_f32).
//
// Rounding points (rnd = round to the input dtype T; identity for f32) are declared on the host as
// gla_gpu::rounding_plan() (bf16 / f16 add A's off-diagonal factors); keep the two in sync.

#include "gla_common.cuh"

#define SL 16   // channel slice in the intra kernel
#define LDT 68  // row stride (floats) of transposed [channel][row] slice arrays

// 1 / x for x in [exp(-DIAG_SAFE), 1] (normal): FAST = rcp.approx.ftz (<= 1 ulp), else IEEE __frcp_rn.
template <bool FAST> __device__ __forceinline__ float rcp_factor(float x) {
  if (FAST) return ptx_rcp_approx_ftz(x);
  return __frcp_rn(x);
}

// Diagonal sub-blocks, decided PER ROW (causal: the path of A_ij, j <= i, depends on rows <= i only).
// Row x of a 16-row block with anchor a (the block's first row) is "safe" on channel d when no reset
// lies in (a, x] and F_a - F_x <= DIAG_SAFE (natural log). Entry (i, j) on channel d takes the
// factored product (q_i exp(F_i - F_a)) * (k_j / exp(F_j - F_a)) when rows i and j are both safe:
// the exponent reaching exp2 is <= 0, the reciprocal is at most exp(DIAG_SAFE) (finite) and
// q_i exp(F_i - F_a) >= exp(-DIAG_SAFE) q_i stays normal (failure mode F4,
// docs/math.md §7). Otherwise the entry takes the
// elementwise path q_i k_j exp(F_i - F_j) (exponent <= 0, j <= i only). Either way each channel adds
// exactly one term to the entry, channels in a fixed order (the other path adds an exact zero).
// The safe flag is bit 7 of the transposed reset-count slice sZt (counts are <= 64).
#define DIAG_SAFE 40.0f
#define SAFE_BIT 0x80u
#define ZMASK 0x7fu

// ---------------------------------------------------------------- kernel 1: intra-chunk
// chunks: per chunk 4 ints (batch, first row within the batch row, length L in 1..64, unused).
// One body of about 250 lines, phases 0-4 in order: the phases share the shared-memory layout
// declared at the top and the thread's A tile (acc) across the channel-slice loop, and keeping
// them in one function keeps the generated code (checked by comparing PTX) fixed.
template <typename T, bool FAST>
__device__ void gla_fwd_intra(const T* __restrict__ q, const T* __restrict__ k,
                              const float* __restrict__ g, int gate_cols,
                              const int* __restrict__ chunks, int Tlen, int H, int K, float scale,
                              T* __restrict__ qg_out, T* __restrict__ kgt_out,
                              T* __restrict__ a_out, float* __restrict__ gamma_out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // 16-bit inputs: the chunk's raw q and k rows are staged in shared memory first (one batch of
  // asynchronous copies for g, q, k); f32 inputs are read from global memory per channel slice.
  constexpr bool STAGE_QK = sizeof(T) == 2;
  T* sQraw = reinterpret_cast<T*>(smem_raw);                 // [64][K] (16-bit inputs only)
  T* sKraw = sQraw + (STAGE_QK ? CH * K : 0);                // [64][K]
  float* sF = reinterpret_cast<float*>(sKraw + (STAGE_QK ? CH * K : 0));  // [64][K] cumsum
  float* sQ = sF + CH * K;                                  // [SL][LDT] raw q slice (transposed)
  float* sK = sQ + SL * LDT;                                // [SL][LDT] raw k slice
  float* sFt = sK + SL * LDT;                               // [SL][LDT] cumsum slice
  float* sQa = sFt + SL * LDT;                              // [SL][LDT] q * D(anchor, i)
  float* sKa = sQa + SL * LDT;                              // [3][SL][LDT] k * D(j, anchor I)
  unsigned char* sZ = reinterpret_cast<unsigned char*>(sKa + 3 * SL * LDT);  // [64][K]
  unsigned char* sZt = sZ + CH * K;                                          // [SL][LDT]
  float* sKg = reinterpret_cast<float*>(sZt + SL * LDT);                     // [SL][LDT] k*D(j,last)
  float* sKd = sKg + SL * LDT;                                                // [SL][LDT] diag key factor
  unsigned short* sRowSafe = reinterpret_cast<unsigned short*>(sKd + SL * LDT);  // [64] bit dd: safe

  const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
  const int b = chunks[4 * c], t0 = chunks[4 * c + 1], L = chunks[4 * c + 2];
  const size_t head_row = (size_t)H;  // rows are [t][h]
  const size_t out_base = ((size_t)c * H + h);

  // phase 0: gates into sF, rows >= L read as 0 (a no-op step); q, k rows (16-bit inputs)
  if (gate_cols == K) {
    for (int i = tid; i < CH * K / 4; i += blockDim.x) {
      int row = i / (K / 4), col = (i - row * (K / 4)) * 4;
      const float* src = g + (((size_t)b * Tlen + t0 + row) * head_row + h) * K + col;
      cp_async16(sF + row * K + col, row < L ? src : g, row < L ? 16 : 0);
    }
  } else {
    for (int idx = tid; idx < CH * K; idx += blockDim.x) {
      int row = idx / K;
      sF[idx] = row < L ? g[((size_t)b * Tlen + t0 + row) * head_row + h] : 0.0f;
    }
  }
  if (STAGE_QK) {
    for (int i = tid; i < CH * K / 8; i += blockDim.x) {
      int row = i / (K / 8), col = (i - row * (K / 8)) * 8;
      size_t off = (((size_t)b * Tlen + t0 + row) * head_row + h) * K + col;
      cp_async16(sQraw + row * K + col, row < L ? q + off : q, row < L ? 16 : 0);
      cp_async16(sKraw + row * K + col, row < L ? k + off : k, row < L ? 16 : 0);
    }
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  // phase 1: sequential inclusive cumsum per channel with resets at -inf
  for (int d = tid; d < K; d += blockDim.x) {
    float F = 0.0f;
    int Z = 0;
    for (int r0 = 0; r0 < CH; r0 += 16) {
      float x[16];
#pragma unroll
      for (int r = 0; r < 16; ++r) x[r] = sF[(r0 + r) * K + d];
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        cumsum_step(x[r], F, Z);
        sF[(r0 + r) * K + d] = F;
        sZ[(r0 + r) * K + d] = (unsigned char)Z;
      }
    }
  }
  __syncthreads();

  // tile of A owned by this thread: 16x16 grid of 4x4 tiles; threads < 136 own lower tiles
  int ti, tj;
  bool lower = tid < 136;
  if (lower) {
    ti = 0;
    while ((ti + 1) * (ti + 2) / 2 <= tid) ++ti;
    tj = tid - ti * (ti + 1) / 2;
  } else {
    int u = tid - 136;  // 0..119, strictly upper tiles
    tj = 1;
    while (tj * (tj + 1) / 2 <= u) ++tj;
    ti = u - tj * (tj - 1) / 2;
  }
  const int I = ti >> 2, J = tj >> 2;
  float acc[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int cc = 0; cc < 4; ++cc) acc[r][cc] = 0.0f;

  const int last = L - 1;
  for (int d0 = 0; d0 < K; d0 += SL) {
    // phase 2: factors for this channel slice. Thread = (channel dd, 4 consecutive rows of one
    // 16-row block), so the anchor rows' values are read once per thread (blockDim = 256).
    {
      const int dd = tid & (SL - 1), rg = tid >> 4, d = d0 + dd;
      const int r0 = rg * 4, a = r0 & ~15, I = a >> 4;
      const float Fl = sF[last * K + d];
      const int Zl = sZ[last * K + d];
      const float Fa = sF[a * K + d];
      const int Za = sZ[a * K + d];
      float Fan[3];
      int Zan[3];
#pragma unroll
      for (int an = 0; an < 3; ++an) {
        Fan[an] = sF[16 * (an + 1) * K + d];
        Zan[an] = sZ[16 * (an + 1) * K + d];
      }
      float vq[4], vk[4], vf[4], vkg[4], vqa[4], vkd[4], vka[3][4];
      u32 zpack = 0;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = r0 + r;
        float qv = 0.0f, kv = 0.0f;
        if (STAGE_QK) {
          qv = to_f(sQraw[row * K + d]);
          kv = to_f(sKraw[row * K + d]);
        } else if (row < L) {
          size_t off = (((size_t)b * Tlen + t0 + row) * head_row + h) * K + d;
          qv = to_f(q[off]);
          kv = to_f(k[off]);
        }
        const float Fi = sF[row * K + d];
        const int Zi = sZ[row * K + d];
        const float eq = (Zi == 0) ? exp_nonpos<FAST>(Fi) : 0.0f;
        qg_out[(out_base * CH + row) * K + d] = from_f<T>(qv * eq);
        vq[r] = qv;
        vk[r] = kv;
        vf[r] = Fi;
        // per-row diagonal safety: rows a..row only (see DIAG_SAFE)
        const bool safe = (Zi == Za) && (Fa - Fi <= DIAG_SAFE);
        zpack |= ((u32)(Zi & ZMASK) | (safe ? SAFE_BIT : 0u)) << (8 * r);
        {
          // the slice's safe flags of this row as a 16-bit mask (bit dd); a warp holds channels
          // 0..15 of row groups 2w (lanes 0..15) and 2w+1 (lanes 16..31)
          const u32 bal = __ballot_sync(0xffffffffu, safe);
          if ((tid & 31) == 0) {
            const int w = tid >> 5;
            sRowSafe[8 * w + r] = (unsigned short)(bal & 0xffffu);
            sRowSafe[8 * w + 4 + r] = (unsigned short)(bal >> 16);
          }
        }
        vkg[r] = kv * decay<FAST>(Fi, Zi, Fl, Zl);
        vqa[r] = qv * decay<FAST>(Fa, Za, Fi, Zi);
        // exp(F_a - F_i) = 1 / exp(F_i - F_a): the exponent reaching exp2 is <= 0, the
        // reciprocal is at most exp(DIAG_SAFE) on safe rows
        vkd[r] = safe ? kv * rcp_factor<FAST>(exp_nonpos<FAST>(Fi - Fa)) : 0.0f;
#pragma unroll
        for (int an = 0; an < 3; ++an)
          vka[an][r] = (I <= an) ? kv * decay<FAST>(Fi, Zi, Fan[an], Zan[an]) : 0.0f;
      }
      if (r0 == 0) gamma_out[out_base * K + d] = (Zl == 0) ? exp_nonpos<FAST>(Fl) : 0.0f;
      const int o4 = dd * LDT + r0;
      *reinterpret_cast<float4*>(sQ + o4) = make_float4(vq[0], vq[1], vq[2], vq[3]);
      *reinterpret_cast<float4*>(sK + o4) = make_float4(vk[0], vk[1], vk[2], vk[3]);
      *reinterpret_cast<float4*>(sFt + o4) = make_float4(vf[0], vf[1], vf[2], vf[3]);
      *reinterpret_cast<u32*>(sZt + o4) = zpack;
      *reinterpret_cast<float4*>(sKg + o4) = make_float4(vkg[0], vkg[1], vkg[2], vkg[3]);
      *reinterpret_cast<float4*>(sQa + o4) = make_float4(vqa[0], vqa[1], vqa[2], vqa[3]);
      *reinterpret_cast<float4*>(sKd + o4) = make_float4(vkd[0], vkd[1], vkd[2], vkd[3]);
#pragma unroll
      for (int an = 0; an < 3; ++an)
        *reinterpret_cast<float4*>(sKa + an * SL * LDT + o4) =
            make_float4(vka[an][0], vka[an][1], vka[an][2], vka[an][3]);
    }
    __syncthreads();
    // coalesced store of the decayed keys, transposed layout [d][row]
    for (int idx = tid; idx < CH * SL; idx += blockDim.x) {
      int dd = idx / CH, row = idx - dd * CH;
      kgt_out[(out_base * K + d0 + dd) * CH + row] = from_f<T>(sKg[dd * LDT + row]);
    }
    // phase 3: accumulate this slice into the thread's tile
    if (lower) {
      if (I > J) {
        const float* qa = sQa + 4 * ti;
        const float* ka = sKa + (I - 1) * SL * LDT + 4 * tj;
#pragma unroll 4
        for (int dd = 0; dd < SL; ++dd) {
          float4 x = *reinterpret_cast<const float4*>(qa + dd * LDT);
          float4 y = *reinterpret_cast<const float4*>(ka + dd * LDT);
          float xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int cc = 0; cc < 4; ++cc) acc[r][cc] = fmaf(xs[r], ys[cc], acc[r][cc]);
        }
      } else {
        const float* qa = sQa + 4 * ti;
        const float* kd = sKd + 4 * tj;
        // channels of this slice on which the tile's 4 rows and 4 columns are all safe
        u32 allsafe = 0xffffu;
#pragma unroll
        for (int r = 0; r < 4; ++r) allsafe &= (u32)sRowSafe[4 * ti + r] & (u32)sRowSafe[4 * tj + r];
        for (int dd = 0; dd < SL; ++dd) {
          if ((allsafe >> dd) & 1u) {
            // common case: factored product on every entry (same sums as the general case below)
            float4 x = *reinterpret_cast<const float4*>(qa + dd * LDT);
            float4 y = *reinterpret_cast<const float4*>(kd + dd * LDT);
            float xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
              for (int cc = 0; cc < 4; ++cc) acc[r][cc] = fmaf(xs[r], ys[cc], acc[r][cc]);
            continue;
          }
          // reset counts and safe flags of the tile's 4 rows i and 4 columns j (one byte each)
          const u32 zwi = *reinterpret_cast<const u32*>(sZt + dd * LDT + 4 * ti);
          const u32 zwj = *reinterpret_cast<const u32*>(sZt + dd * LDT + 4 * tj);
          float4 x = *reinterpret_cast<const float4*>(qa + dd * LDT);
          float4 y = *reinterpret_cast<const float4*>(kd + dd * LDT);  // 0 on unsafe columns
          float xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
          for (int r = 0; r < 4; ++r)
            if (!((zwi >> (8 * r)) & SAFE_BIT)) xs[r] = 0.0f;  // unsafe row: no factored term
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int cc = 0; cc < 4; ++cc) acc[r][cc] = fmaf(xs[r], ys[cc], acc[r][cc]);
          if (((zwi & zwj) & 0x80808080u) != 0x80808080u) {
            // elementwise path for the entries whose row or column is unsafe (the factored term
            // above is an exact 0 there)
            float4 q4 = *reinterpret_cast<const float4*>(sQ + dd * LDT + 4 * ti);
            float4 k4 = *reinterpret_cast<const float4*>(sK + dd * LDT + 4 * tj);
            float4 fi = *reinterpret_cast<const float4*>(sFt + dd * LDT + 4 * ti);
            float4 fj = *reinterpret_cast<const float4*>(sFt + dd * LDT + 4 * tj);
            float qs[4] = {q4.x, q4.y, q4.z, q4.w}, ks[4] = {k4.x, k4.y, k4.z, k4.w};
            float fis[4] = {fi.x, fi.y, fi.z, fi.w}, fjs[4] = {fj.x, fj.y, fj.z, fj.w};
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
              for (int cc = 0; cc < 4; ++cc) {
                const u32 zi = (zwi >> (8 * r)) & 0xffu, zj = (zwj >> (8 * cc)) & 0xffu;
                if (4 * tj + cc <= 4 * ti + r && ((zi ^ zj) & ZMASK) == 0u && !(zi & zj & SAFE_BIT)) {
                  acc[r][cc] = fmaf(qs[r] * ks[cc], exp_nonpos<FAST>(fis[r] - fjs[cc]), acc[r][cc]);
                }
              }
          }
        }
      }
    }
    __syncthreads();
  }
  // phase 4: write the tile (upper tiles and j > i entries are exact zeros)
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int cc = 0; cc < 4; ++cc)
      a_out[(out_base * CH + 4 * ti + r) * CH + 4 * tj + cc] =
          from_f<T>((4 * tj + cc <= 4 * ti + r) ? scale * acc[r][cc] : 0.0f);
}

// ---------------------------------------------------------------- kernel 1': intra-chunk on tensor cores
// gla_fwd_intra_tc_<T> (bf16 / f16 inputs; f32 keeps gla_fwd_intra above): the same outputs
// (qg, kgT, A, gamma) with A's off-diagonal 16 x 16 blocks on tensor cores. For query block
// I >= 1 with anchor a = its first row:
//     A_ij = sum_d rnd(scale q_i D(a, i)) rnd(k_j D(j, a))     (j < a; both factors <= 1 times
//                                                              |q|, |k|; rounding points
//                                                              offdiag_q / offdiag_k of the plan)
// (mma.sync m16n8k16, f32 accumulation, channels in a fixed order), then A = rnd(A). The diagonal
// blocks are f32 FFMA as in gla_fwd_intra (per-row DIAG_SAFE factored product or the elementwise
// form, chosen from rows <= i only), then A = rnd(scale * sum). The channels are walked in slices
// of 32 (about 53 KB of shared memory: 4 blocks per SM); per slice: stage g, q, k (transposed,
// [channel][row]), the reset-aware cumsum (one warp), qg / gamma, the factors and kgT (staged in
// shared memory), then warps 0-3 run the off-diagonal products and write kgT out by 16-byte
// stores while warps 4-7 run the diagonal blocks (120 threads: 40 4x4 tiles x 3 channel groups,
// whose partial sums are added in a fixed order at the end).
#define TSL 32         // channels per slice
// Row strides of the transposed [channel][row] slice arrays, one per element size, chosen so that
// a warp whose 32 lanes walk 32 channels of one row (the staging and factor loops) hits 32
// different shared-memory banks: f32 65 words (65 = 1 mod 32); 16-bit 66 elements = 33 words;
// u8 68 bytes = 17 words. (One stride of 68 for all made the f32 accesses 4-way bank conflicts.)
#define TLDF 65
#define TLDH 66
#define TLDZ 68
#define FLD (TSL + 8)  // row stride (elements) of the rounded factor arrays [row][channel]
// Row stride of the kgT stage [channel][row] (16-bit): 33 words, so the factor loop's stores (32
// lanes = 32 channels of one row) and the copy-out's 4-byte loads (lanes = 4 channels x 8 row
// groups) hit 32 different banks.
#define TLDG 66
template <typename T>
__device__ void gla_fwd_intra_tc(const T* __restrict__ q, const T* __restrict__ k,
                                 const float* __restrict__ g, int gate_cols,
                                 const int* __restrict__ chunks, int Tlen, int H, int K, float scale,
                                 T* __restrict__ qg_out, T* __restrict__ kgt_out,
                                 T* __restrict__ a_out, float* __restrict__ gamma_out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sFt = reinterpret_cast<float*>(smem_raw);  // [TSL][TLDF] cumsum F
  float* sQd = sFt + TSL * TLDF;                     // [TSL][TLDF] q_i D(a, i), a = first row of i's block
  float* sKd = sQd + TSL * TLDF;                     // [TSL][TLDF] safe ? k_j / D(a, j) : 0
  T* sQt = reinterpret_cast<T*>(sKd + TSL * TLDF);  // [TSL][TLDH] q
  T* sKt = sQt + TSL * TLDH;                         // [TSL][TLDH] k
  T* sQa = sKt + TSL * TLDH;                         // [48][FLD] rnd(scale q_i D(a, i)), rows 16..63
  T* sKf = sQa + 48 * FLD;                           // [96][FLD] rnd(k_j D(j, a)): a = 16 at 0 (rows
                                                     //   0..15), a = 32 at 16 (0..31), a = 48 at 48 (0..47)
  unsigned char* sZt = reinterpret_cast<unsigned char*>(sKf + 96 * FLD);  // [TSL][TLDZ] reset counts
  unsigned char* sZS = sZt + TSL * TLDZ;             // [TSL][TLDZ] reset count | SAFE_BIT
  u16* sKg = reinterpret_cast<u16*>(sZS + TSL * TLDZ);  // [TSL][TLDG] rnd(k_j D(j, last)) (kgT)
  float* sRed = sQd;  // after the slices: diagonal partial sums of channel groups 1, 2 [40][2][16]

  const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, warp = tid >> 5;
  const int lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = chunks[4 * c], t0 = chunks[4 * c + 1], L = chunks[4 * c + 2];
  const size_t out_base = (size_t)c * H + h;
  const size_t row0 = (size_t)b * Tlen + t0;

  // One accumulator array for both roles (registers): warps 0-3 hold off-diagonal output tiles
  // (I, n8 tile) w, w + 4, w + 8 of the 12 below in acc[4 t .. 4 t + 3]; warps 4-7 a diagonal
  // 4x4 tile in acc[4 r + cj].
  float acc[16];
#pragma unroll
  for (int r = 0; r < 16; ++r) acc[r] = 0.0f;
  // warps 4-7: diagonal 4x4 tile dt (block dt / 10, lower tile dt % 10), channel group grp
  const int u = tid - 128, dtile = u / 3, grp = u - 3 * (u / 3);
  const bool diag = tid >= 128 && u < 120;
  int di0 = 0, dj0 = 0;
  if (diag) {
    const int blk = dtile / 10, lt = dtile - 10 * blk;
    const int ti = lt < 1 ? 0 : (lt < 3 ? 1 : (lt < 6 ? 2 : 3));
    const int tj = lt - ti * (ti + 1) / 2;
    di0 = 16 * blk + 4 * ti;
    dj0 = 16 * blk + 4 * tj;
  }

  for (int d0 = 0; d0 < K; d0 += TSL) {
    // stage the slice transposed (rows >= L: g = q = k = 0) by 16-byte loads, all issued before
    // the stores: thread = (row tid / 4, channels 8 (tid % 4) .. +7); a warp's stores of one
    // channel hit 16 (16-bit) or 32 (f32) different banks
    {
      const int r = tid >> 2, c8 = 8 * (tid & 3);
      Vec8<T> qv, kv;
      Vec8<float> gv;
      if (r < L) {
        const size_t rh = (row0 + r) * H + h, o = rh * K + d0 + c8;
        qv.load(q + o);
        kv.load(k + o);
        if (gate_cols == 1) {
          const u32 x = __float_as_uint(g[rh]);
#pragma unroll
          for (int e = 0; e < 8; ++e) gv.w[e] = x;
        } else {
          gv.load(g + o);
        }
      } else {
        qv.zero();
        kv.zero();
        gv.zero();
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        sFt[(c8 + e) * TLDF + r] = gv.get(e);
        sQt[(c8 + e) * TLDH + r] = qv.raw(e);
        sKt[(c8 + e) * TLDH + r] = kv.raw(e);
      }
    }
    __syncthreads();
    if (tid < TSL) {
      // sequential inclusive cumsum per channel with resets at -inf (as the CPU twin); rows >= L
      // add 0, so row 63 carries the last valid row's F and Z. Sixteen gates are loaded before
      // the first of their sums, and four reset counts go out in one 4-byte store.
      float F = 0.0f;
      int Z = 0;
#pragma unroll 1
      for (int r0 = 0; r0 < CH; r0 += 16) {
        float x[16];
#pragma unroll
        for (int r = 0; r < 16; ++r) x[r] = sFt[tid * TLDF + r0 + r];
        u32 zw = 0;
#pragma unroll
        for (int r = 0; r < 16; ++r) {
          cumsum_step(x[r], F, Z);
          sFt[tid * TLDF + r0 + r] = F;
          zw |= (u32)(Z & 0xff) << (8 * (r & 3));
          if ((r & 3) == 3) {
            *reinterpret_cast<u32*>(sZt + tid * TLDZ + r0 + r - 3) = zw;
            zw = 0;
          }
        }
      }
      gamma_out[out_base * K + d0 + tid] = (Z == 0) ? exp_nonpos<true>(F) : 0.0f;
    }
    __syncthreads();
    // qg, the diagonal factors and safe flags, the off-diagonal factors. Thread: channel cc = lane,
    // rows warp + 8 it (it = 0..7, unrolled), so row r's block is it / 2 at compile time and the
    // four block anchors' (F, Z) are read once per slice. D(a, r) = exp(F_r - F_a) (no reset in
    // (a, r]) is evaluated once, for qd, qa and the reciprocal of kd.
    {
      const int cc = lane;
      float Fan[4];
      int Zan[4];
#pragma unroll
      for (int an = 0; an < 4; ++an) {
        Fan[an] = sFt[cc * TLDF + 16 * an];
        Zan[an] = sZt[cc * TLDZ + 16 * an];
      }
      const float Fl = sFt[cc * TLDF + CH - 1];
      const int Zl = sZt[cc * TLDZ + CH - 1];
#pragma unroll
      for (int it = 0; it < CH / 8; ++it) {
        const int blk = it >> 1, r = warp + 8 * it, o = cc * TLDF + r, oh = cc * TLDH + r,
                  oz = cc * TLDZ + r;
        const float F = sFt[o];
        const int Z = sZt[oz];
        const float qv = to_f(sQt[oh]), kv = to_f(sKt[oh]);
        qg_out[(out_base * CH + r) * K + d0 + cc] = from_f<T>(qv * ((Z == 0) ? exp_nonpos<true>(F) : 0.0f));
        const float Fa = Fan[blk];
        const int Za = Zan[blk];
        const float ea = exp_nonpos<true>(F - Fa);
        const float Da = (Z == Za) ? ea : 0.0f;  // decay<true>(Fa, Za, F, Z)
        sQd[o] = qv * Da;
        if (blk > 0) sQa[(r - 16) * FLD + cc] = from_f<T>(scale * qv * Da);
        const bool safe = (Z == Za) && (Fa - F <= DIAG_SAFE);
        sKd[o] = safe ? kv * rcp_factor<true>(ea) : 0.0f;
        sZS[oz] = (unsigned char)((Z & ZMASK) | (safe ? SAFE_BIT : 0u));
        sKg[cc * TLDG + r] = from_f<T>(kv * decay<true>(F, Z, Fl, Zl)).x;
#pragma unroll
        for (int an = 0; an < 3; ++an) {
          // anchor a2 = 16 (an + 1) takes the rows r < a2, i.e. the blocks blk <= an
          const int koff = an == 0 ? 0 : (an == 1 ? 16 : 48);
          if (blk <= an)
            sKf[(koff + r) * FLD + cc] = from_f<T>(kv * decay<true>(F, Z, Fan[an + 1], Zan[an + 1]));
        }
      }
    }
    __syncthreads();
    if (warp < 4) {
#pragma unroll
      for (int t = 0; t < 3; ++t) {
        const int tile = warp + 4 * t;  // 0,1: I = 1; 2..5: I = 2; 6..11: I = 3
        const int I = tile < 2 ? 1 : (tile < 6 ? 2 : 3);
        const int nt = tile - (I == 1 ? 0 : (I == 2 ? 2 : 6));
        const int koff = I == 1 ? 0 : (I == 2 ? 16 : 48);
#pragma unroll
        for (int kk = 0; kk < TSL; kk += 16)
          Tile<T, FLD, 1, 1, FLD>::mma(acc + 4 * t, sQa + 16 * (I - 1) * FLD + kk,
                                       sKf + (koff + nt * 8) * FLD + kk, 0);
      }
      // kgT = rnd(k_j D(j, last)) (staged in the factor loop) out as [channel][row], by the
      // warps without diagonal work: 16-byte stores of rows 8 (idx % 8) .. +7 of channel idx / 8
#pragma unroll
      for (int it = 0; it < 2; ++it) {
        const int idx = tid + 128 * it, cc = idx >> 3, r8 = 8 * (idx & 7);
        const u32* src = reinterpret_cast<const u32*>(sKg + cc * TLDG + r8);
        *reinterpret_cast<uint4*>(kgt_out + (out_base * K + d0 + cc) * CH + r8) =
            make_uint4(src[0], src[1], src[2], src[3]);
      }
    } else if (diag) {
      for (int cc = grp; cc < TSL; cc += 3) {
        const u32 zwi = *reinterpret_cast<const u32*>(sZS + cc * TLDZ + di0);
        const u32 zwj = *reinterpret_cast<const u32*>(sZS + cc * TLDZ + dj0);
        // (odd f32 stride: four scalar loads, no float4)
        float xs[4], ys[4];  // ys: 0 if unsafe
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          xs[r] = sQd[cc * TLDF + di0 + r];
          ys[r] = sKd[cc * TLDF + dj0 + r];
        }
#pragma unroll
        for (int r = 0; r < 4; ++r)
          if (!((zwi >> (8 * r)) & SAFE_BIT)) xs[r] = 0.0f;  // unsafe row: no factored term
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int cj = 0; cj < 4; ++cj) acc[4 * r + cj] = fmaf(xs[r], ys[cj], acc[4 * r + cj]);
        if (((zwi & zwj) & 0x80808080u) != 0x80808080u) {
          // elementwise path for the entries whose row or column is unsafe (the factored term
          // above is an exact 0 there)
          float qs[4], ks[4], fis[4], fjs[4];
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            qs[r] = to_f(sQt[cc * TLDH + di0 + r]);
            ks[r] = to_f(sKt[cc * TLDH + dj0 + r]);
            fis[r] = sFt[cc * TLDF + di0 + r];
            fjs[r] = sFt[cc * TLDF + dj0 + r];
          }
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int cj = 0; cj < 4; ++cj) {
              const u32 zi = (zwi >> (8 * r)) & 0xffu, zj = (zwj >> (8 * cj)) & 0xffu;
              if (dj0 + cj <= di0 + r && ((zi ^ zj) & ZMASK) == 0u && !(zi & zj & SAFE_BIT))
                acc[4 * r + cj] = fmaf(qs[r] * ks[cj], exp_nonpos<true>(fis[r] - fjs[cj]), acc[4 * r + cj]);
            }
        }
      }
    }
    __syncthreads();
  }
  // A: off-diagonal tiles, the diagonal tiles (groups added in a fixed order), zeros above
  if (warp < 4) {
#pragma unroll
    for (int t = 0; t < 3; ++t) {
      const int tile = warp + 4 * t;
      const int I = tile < 2 ? 1 : (tile < 6 ? 2 : 3);
      const int nt = tile - (I == 1 ? 0 : (I == 2 ? 2 : 6));
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = 16 * I + gid + 8 * half, j = nt * 8 + 2 * tig;
        // both columns in one 4-byte store (j even)
        *reinterpret_cast<u32*>(a_out + (out_base * CH + i) * CH + j) = pack2<T>(acc[4 * t + 2 * half], acc[4 * t + 2 * half + 1]);
      }
    }
  }
  if (diag && grp > 0) {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int cj = 0; cj < 4; ++cj) sRed[(dtile * 2 + grp - 1) * 16 + 4 * r + cj] = acc[4 * r + cj];
  }
  __syncthreads();
  if (diag && grp == 0) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = di0 + r;
      u16 e[4];
#pragma unroll
      for (int cj = 0; cj < 4; ++cj) {
        const int j = dj0 + cj;
        const float s = (acc[4 * r + cj] + sRed[(dtile * 2) * 16 + 4 * r + cj]) +
                        sRed[(dtile * 2 + 1) * 16 + 4 * r + cj];
        e[cj] = from_f<T>(j <= i ? scale * s : 0.0f).x;
      }
      // the tile row's 4 columns in one 8-byte store (dj0 is a multiple of 4)
      uint2 w;
      w.x = (u32)e[0] | ((u32)e[1] << 16);
      w.y = (u32)e[2] | ((u32)e[3] << 16);
      *reinterpret_cast<uint2*>(a_out + (out_base * CH + i) * CH + dj0) = w;
    }
  }
  {
    // zeros above the diagonal 4x4 tiles: thread = (row tid / 4, columns 16 (tid % 4) .. +15), by
    // 8-byte stores of whole 4-column groups
    const int i = tid >> 2, jb = 4 * (tid & 3);
#pragma unroll
    for (int q4 = 0; q4 < 4; ++q4)
      if (jb + q4 > (i >> 2))
        *reinterpret_cast<uint2*>(a_out + (out_base * CH + i) * CH + 4 * (jb + q4)) = make_uint2(0u, 0u);
  }
}

#define INTRA(NAME, T, FAST)                                                                    \
  extern "C" __global__ void __launch_bounds__(256) NAME(                                       \
      const T* q, const T* k, const float* g, int gate_cols, const int* chunks, int Tlen, int H, \
      int K, float scale, T* qg_out, T* kgt_out, T* a_out, float* gamma_out) {                  \
    gla_fwd_intra<T, FAST>(q, k, g, gate_cols, chunks, Tlen, H, K, scale, qg_out, kgt_out,     \
                           a_out, gamma_out);                                                   \
  }
INTRA(gla_fwd_intra_f32, float, false)
// Variant with ex2.approx.ftz / rcp.approx.ftz (see exp_nonpos): the host's default for f32;
// GLA_INTRA_ACCURATE=1 selects the exp2f / __frcp_rn kernel above.
INTRA(gla_fwd_intra_fast_f32, float, true)
#define INTRA_TC(NAME, T)                                                                       \
  extern "C" __global__ void __launch_bounds__(256, 4) NAME(                                    \
      const T* q, const T* k, const float* g, int gate_cols, const int* chunks, int Tlen, int H, \
      int K, float scale, T* qg_out, T* kgt_out, T* a_out, float* gamma_out) {                  \
    gla_fwd_intra_tc<T>(q, k, g, gate_cols, chunks, Tlen, H, K, scale, qg_out, kgt_out, a_out,  \
                        gamma_out);                                                             \
  }
// bf16 / f16 inputs (the host's only intra kernels for them)
INTRA_TC(gla_fwd_intra_tc_bf16, bf16_t)
INTRA_TC(gla_fwd_intra_tc_f16, f16_t)

// ---------------------------------------------------------------- kernel 2: states + output
// seqs: per sequence 6 ints (batch, first row, length, first chunk index, number of chunks, unused).



// Per-stage shared-memory layout of the state kernel (u16 units unless noted).
template <int K, int BV> struct StateSmem {
  static constexpr int KP = K + 8;   // padded row of qg / S^T
  static constexpr int CP = CH + 8;  // padded row of A, kg^T
  static constexpr int VP = BV + 8;  // padded row of the v stage [64][BV]
  static constexpr int QG = 0;
  static constexpr int KT = QG + CH * KP;
  static constexpr int AA = KT + K * CP;
  static constexpr int VS = AA + CH * CP;
  static constexpr int GM = VS + CH * VP;       // gamma: K floats = 2K u16
  static constexpr int STAGE = GM + 2 * K;      // u16 per stage (multiple of 8)
  static constexpr int ST = 2 * STAGE;          // rnd(S)^T [BV][KP] after both stages
  static constexpr int TOTAL = ST + BV * KP;
};

template <typename T, int K, int BV, int NTHR>
__device__ __forceinline__ void state_issue_loads(u16* stage, const T* __restrict__ v,
                                                  const T* __restrict__ qg, const T* __restrict__ kgt,
                                                  const T* __restrict__ A, const float* __restrict__ gamma,
                                                  size_t cb, size_t vrow0, int L, int h, int H, int V,
                                                  int e0, int tid) {
  typedef StateSmem<K, BV> SM;
  // compile-time trip counts: each copy's shared and global addresses are a per-thread base plus
  // an immediate offset
  static_assert((CH * K / 8) % NTHR == 0 && (CH * CH / 8) % NTHR == 0 && (CH * BV / 8) % NTHR == 0,
                "state stage: whole rounds of 16-byte copies");
  const u16* gq = reinterpret_cast<const u16*>(qg) + cb * CH * K;
#pragma unroll
  for (int it = 0; it < CH * K / 8 / NTHR; ++it) {
    const int i = tid + it * NTHR, row = i / (K / 8), col = i - row * (K / 8);
    cp_async16(stage + SM::QG + row * SM::KP + col * 8, gq + (size_t)i * 8, 16);
  }
  const u16* gk = reinterpret_cast<const u16*>(kgt) + cb * K * CH;
#pragma unroll
  for (int it = 0; it < K * CH / 8 / NTHR; ++it) {
    const int i = tid + it * NTHR, row = i / (CH / 8), col = i - row * (CH / 8);
    cp_async16(stage + SM::KT + row * SM::CP + col * 8, gk + (size_t)i * 8, 16);
  }
  const u16* ga = reinterpret_cast<const u16*>(A) + cb * CH * CH;
#pragma unroll
  for (int it = 0; it < CH * CH / 8 / NTHR; ++it) {
    const int i = tid + it * NTHR, row = i / (CH / 8), col = i - row * (CH / 8);
    cp_async16(stage + SM::AA + row * SM::CP + col * 8, ga + (size_t)i * 8, 16);
  }
  const u16* gv = reinterpret_cast<const u16*>(v);
#pragma unroll
  for (int it = 0; it < CH * BV / 8 / NTHR; ++it) {
    const int i = tid + it * NTHR, row = i / (BV / 8), col = (i - row * (BV / 8)) * 8;
    const u16* src = gv + ((vrow0 + row) * H + h) * V + e0 + col;
    cp_async16(stage + SM::VS + row * SM::VP + col, row < L ? src : gv, row < L ? 16 : 0);
  }
  const float* gg = gamma + cb * K;
  for (int i = tid; i < K / 4; i += NTHR) cp_async16(stage + SM::GM + i * 8, gg + i * 4, 16);
  cp_async_commit();
}

// NW warps per block (4 or 8). State rows: warp w owns rows [w K/NW, (w+1) K/NW) (MT m16 tiles).
// Output rows: the 4 row blocks of 16 are split over the warps, NW/4 warps per row block, each
// taking NT/(NW/4) of the n8 tiles. Which warp computes an element never changes its operations
// or their order, so every NW gives bit-identical o and hT.
// One body of about 170 lines: the chunk loop carries the state S in registers and the two-stage
// cp.async pipeline across iterations, so its steps (rnd(S)^T, output, state update) stay inline.
template <typename T, int K, int BV, int NW>
__device__ void gla_fwd_state_mma(const T* __restrict__ v, const float* __restrict__ h0,
                                  const int* __restrict__ seqs, int Tlen, int H, int V,
                                  float scale, const T* __restrict__ qg, const T* __restrict__ kgt,
                                  const T* __restrict__ A, const float* __restrict__ gamma,
                                  T* __restrict__ o, float* __restrict__ ht, T* __restrict__ hs) {
  typedef StateSmem<K, BV> SM;
  constexpr int KP = SM::KP, CP = SM::CP, VP = SM::VP;
  constexpr int NTHR = 32 * NW;
  constexpr int MT = K / (16 * NW);  // m16 tiles of the state per warp (NW warps over K rows)
  constexpr int NT = BV / 8;         // n8 tiles
  constexpr int OW = NW / 4;         // warps per 16-row output block
  constexpr int NTO = NT / OW;       // n8 tiles of the output per warp
  static_assert(MT >= 1 && NTO >= 1 && K % (16 * NW) == 0, "state kernel tiling");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  u16* smem = reinterpret_cast<u16*>(smem_raw);
  u16* sSt = smem + SM::ST;  // [BV][KP]  rnd(S)^T

  const int vb = blockIdx.x, h = blockIdx.y, n = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int b = seqs[6 * n], start = seqs[6 * n + 1], len = seqs[6 * n + 2];
  const int c0 = seqs[6 * n + 3], nch = seqs[6 * n + 4];
  const int e0 = vb * BV;
  const int rowbase = warp * (K / NW);

  float S[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        int d = rowbase + mt * 16 + gid + ((r & 2) ? 8 : 0);
        int e = e0 + nt * 8 + tig * 2 + (r & 1);
        S[mt][nt][r] = h0 ? h0[(((size_t)n * H + h) * K + d) * V + e] : 0.0f;
      }

  if (nch > 0)
    state_issue_loads<T, K, BV, NTHR>(smem, v, qg, kgt, A, gamma, (size_t)c0 * H + h,
                                (size_t)b * Tlen + start, min(CH, len), h, H, V, e0, tid);
  for (int ci = 0; ci < nch; ++ci) {
    const int L = min(CH, len - ci * CH);
    u16* stg = smem + (ci & 1) * SM::STAGE;
    if (ci + 1 < nch) {
      // the other stage was last read by chunk ci-1, finished before the barrier ending it
      state_issue_loads<T, K, BV, NTHR>(smem + ((ci + 1) & 1) * SM::STAGE, v, qg, kgt, A, gamma,
                                  (size_t)(c0 + ci + 1) * H + h,
                                  (size_t)b * Tlen + start + (ci + 1) * CH,
                                  min(CH, len - (ci + 1) * CH), h, H, V, e0, tid);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    const u16* sQg = stg + SM::QG;
    const u16* sKt = stg + SM::KT;
    const u16* sA = stg + SM::AA;
    const u16* sV = stg + SM::VS;
    const float* sGam = reinterpret_cast<const float*>(stg + SM::GM);
    // rnd(S)^T into shared
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          int d = rowbase + mt * 16 + gid + ((r & 2) ? 8 : 0);
          int e = nt * 8 + tig * 2 + (r & 1);
          sSt[e * KP + d] = from_f<T>(S[mt][nt][r]).x;
        }
    if (hs)  // the backward's chunk start states Hs[p] = rnd(S before chunk p), [chunk][head][K][V]
      store_state_tiles<T, MT, NT, true>(hs + ((size_t)(c0 + ci) * H + h) * K * V + e0, V, S, rowbase);
    __syncthreads();

    // fragments by ldmatrix: A (16 x 16, row-major, k contiguous) of rows m0 .. m0 + 15; B of the
    // n8 tiles nt, nt + 1: from rnd(S)^T (n-major) and from the row-major v stage (k-major,
    // transposed on the way)
    auto afrag = [&](const u16* base, int ld, int m0, int kk, u32* af) {
      ldsm_x4(af, base + (m0 + (lane & 15)) * ld + kk + (lane >> 4) * 8);
    };
    auto vfrag2 = [&](int jj, int nt, u32* bf) {
      ldsm_x4_trans(bf, sV + (jj + (lane & 15)) * VP + (nt + (lane >> 4)) * 8);
    };

    // output rows 16*(warp % 4) .. +15, n8 tiles nt0 .. nt0 + NTO - 1
    {
      float acc[NTO][4];
#pragma unroll
      for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[nt][r] = 0.0f;
      const int ow = warp & 3, nt0 = (warp >> 2) * NTO;
      const int r0 = ow * 16 + gid;
      static_assert(NTO % 2 == 0 && NT % 2 == 0, "n8 tiles in pairs (ldmatrix.x4)");
#pragma unroll 4
      for (int kk = 0; kk < K; kk += 16) {
        u32 af[4];
        afrag(sQg, KP, ow * 16, kk, af);
#pragma unroll
        for (int nt = 0; nt < NTO; nt += 2) {
          u32 bf[4];
          ldsm_x4(bf, sSt + ((nt0 + nt) * 8 + (lane & 7) + 8 * (lane >> 4)) * KP + kk + 8 * ((lane >> 3) & 1));
          Mma<T>::run(acc[nt], af, bf);
          Mma<T>::run(acc[nt + 1], af, bf + 2);
        }
      }
#pragma unroll
      for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[nt][r] *= scale;
      for (int jj = 0; jj <= ow * 16; jj += 16) {
        u32 af[4];
        afrag(sA, CP, ow * 16, jj, af);
#pragma unroll
        for (int nt = 0; nt < NTO; nt += 2) {
          u32 bf[4];
          vfrag2(jj, nt0 + nt, bf);
          Mma<T>::run(acc[nt], af, bf);
          Mma<T>::run(acc[nt + 1], af, bf + 2);
        }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        int row = r0 + half * 8;
        if (row < L) {
          size_t base = (((size_t)b * Tlen + start + ci * CH + row) * H + h) * V + e0;
#pragma unroll
          for (int nt = 0; nt < NTO; ++nt) {
            *reinterpret_cast<u32*>(o + base + (nt0 + nt) * 8 + tig * 2) = pack2<T>(acc[nt][half * 2], acc[nt][half * 2 + 1]);
          }
        }
      }
    }
    // state update: S = gamma * S + kg^T @ v
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float g0 = sGam[rowbase + mt * 16 + gid], g1 = sGam[rowbase + mt * 16 + gid + 8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        S[mt][nt][0] *= g0;
        S[mt][nt][1] *= g0;
        S[mt][nt][2] *= g1;
        S[mt][nt][3] *= g1;
      }
    }
#pragma unroll
    for (int jj = 0; jj < CH; jj += 16) {
      u32 af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) afrag(sKt, CP, rowbase + mt * 16, jj, af[mt]);
#pragma unroll
      for (int nt = 0; nt < NT; nt += 2) {
        u32 bf[4];
        vfrag2(jj, nt, bf);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) Mma<T>::run(S[mt][nt], af[mt], bf);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) Mma<T>::run(S[mt][nt + 1], af[mt], bf + 2);
      }
    }
    __syncthreads();
  }
  // final state
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        int d = rowbase + mt * 16 + gid + ((r & 2) ? 8 : 0);
        int e = e0 + nt * 8 + tig * 2 + (r & 1);
        ht[(((size_t)n * H + h) * K + d) * V + e] = S[mt][nt][r];
      }
}

// f32 path: true FP32 FFMA. State fp32 in shared memory; BV = 32 value columns per block.
// tf32 != 0 rounds every product operand to TF32 (cvt.rna) first: Precision::Tf32, explicit only.
template <int K>
__device__ void gla_fwd_state_f32(const float* __restrict__ v, const float* __restrict__ h0,
                                  const int* __restrict__ seqs, int Tlen, int H, int V,
                                  float scale, const float* __restrict__ qg,
                                  const float* __restrict__ kgt, const float* __restrict__ A,
                                  const float* __restrict__ gamma, float* __restrict__ o,
                                  float* __restrict__ ht, float* __restrict__ hs, int tf32) {
  constexpr int BV = 32;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sQg = reinterpret_cast<float*>(smem_raw);  // [64][K]
  float* sKt = sQg + CH * K;                          // [K][64]
  float* sA = sKt + K * CH;                           // [64][64]
  float* sV = sA + CH * CH;                           // [64][BV]
  float* sS = sV + CH * BV;                           // [K][BV]
  float* sGam = sS + K * BV;                          // [K]
  const int vb = blockIdx.x, h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x;
  const int b = seqs[6 * n], start = seqs[6 * n + 1], len = seqs[6 * n + 2];
  const int c0 = seqs[6 * n + 3], nch = seqs[6 * n + 4];
  const int e0 = vb * BV;
  const int e = tid & 31, rg = tid >> 5;  // column, row group (4 groups)
  for (int i = tid; i < K * BV; i += 128) {
    int d = i / BV, ee = i - d * BV;
    sS[i] = h0 ? h0[(((size_t)n * H + h) * K + d) * V + e0 + ee] : 0.0f;
  }
  for (int ci = 0; ci < nch; ++ci) {
    const int c = c0 + ci;
    const int L = min(CH, len - ci * CH);
    const size_t cb = (size_t)c * H + h;
    for (int i = tid; i < CH * K; i += 128) {
      float x = qg[cb * CH * K + i];
      sQg[i] = tf32 ? tf32r(x) : x;
      float y = kgt[cb * K * CH + i];
      sKt[i] = tf32 ? tf32r(y) : y;
    }
    for (int i = tid; i < CH * CH; i += 128) {
      float x = A[cb * CH * CH + i];
      sA[i] = tf32 ? tf32r(x) : x;
    }
    for (int i = tid; i < CH * BV; i += 128) {
      int row = i / BV, ee = i - row * BV;
      float x = 0.0f;
      if (row < L) x = v[(((size_t)b * Tlen + start + ci * CH + row) * H + h) * V + e0 + ee];
      sV[i] = tf32 ? tf32r(x) : x;
    }
    for (int i = tid; i < K; i += 128) sGam[i] = gamma[cb * K + i];
    __syncthreads();
    if (hs)  // the backward's chunk start states Hs[p] = S before chunk p, [chunk][head][K][V]
      for (int i = tid; i < K * BV; i += 128) {
        int d = i / BV, ee = i - d * BV;
        hs[(cb * K + d) * V + e0 + ee] = sS[i];
      }
    // output: rows rg + 4m
    float acc[16];
#pragma unroll
    for (int m = 0; m < 16; ++m) acc[m] = 0.0f;
    for (int d = 0; d < K; ++d) {
      float s = sS[d * BV + e];
      if (tf32) s = tf32r(s);
#pragma unroll
      for (int m = 0; m < 16; ++m) acc[m] = fmaf(sQg[(rg + 4 * m) * K + d], s, acc[m]);
    }
#pragma unroll
    for (int m = 0; m < 16; ++m) {
      int row = rg + 4 * m;
      float a = acc[m] * scale;
      for (int j = 0; j <= row; ++j) a = fmaf(sA[row * CH + j], sV[j * BV + e], a);
      if (row < L) o[(((size_t)b * Tlen + start + ci * CH + row) * H + h) * V + e0 + e] = a;
    }
    __syncthreads();
    // state: rows d = rg + 4m
    for (int d = rg; d < K; d += 4) {
      float s = sS[d * BV + e] * sGam[d];
      for (int j = 0; j < CH; ++j) s = fmaf(sKt[d * CH + j], sV[j * BV + e], s);
      sS[d * BV + e] = s;
    }
    __syncthreads();
  }
  for (int i = tid; i < K * BV; i += 128) {
    int d = i / BV, ee = i - d * BV;
    ht[(((size_t)n * H + h) * K + d) * V + e0 + ee] = sS[i];
  }
}

#define STATE_MMA(NAME, T, K, BV, NW)                                                          \
  extern "C" __global__ void __launch_bounds__(32 * NW) NAME(                                   \
      const T* v, const float* h0, const int* seqs, int Tlen, int H, int V, float scale,       \
      const T* qg, const T* kgt, const T* A, const float* gamma, T* o, float* ht, T* hs) {     \
    gla_fwd_state_mma<T, K, BV, NW>(v, h0, seqs, Tlen, H, V, scale, qg, kgt, A, gamma, o, ht, hs); \
  }
#define STATE_F32(NAME, K)                                                                     \
  extern "C" __global__ void __launch_bounds__(128) NAME(                                      \
      const float* v, const float* h0, const int* seqs, int Tlen, int H, int V, float scale,   \
      const float* qg, const float* kgt, const float* A, const float* gamma, float* o,         \
      float* ht, float* hs, int tf32) {                                                        \
    gla_fwd_state_f32<K>(v, h0, seqs, Tlen, H, V, scale, qg, kgt, A, gamma, o, ht, hs, tf32);  \
  }

STATE_MMA(gla_fwd_state_bf16_k64_v32, bf16_t, 64, 32, 4)
STATE_MMA(gla_fwd_state_bf16_k64_v64, bf16_t, 64, 64, 4)
STATE_MMA(gla_fwd_state_bf16_k128_v32, bf16_t, 128, 32, 4)
STATE_MMA(gla_fwd_state_bf16_k128_v32_w8, bf16_t, 128, 32, 8)
STATE_MMA(gla_fwd_state_bf16_k128_v64_w8, bf16_t, 128, 64, 8)
STATE_MMA(gla_fwd_state_bf16_k128_v128_w8, bf16_t, 128, 128, 8)
STATE_MMA(gla_fwd_state_bf16_k256_v32, bf16_t, 256, 32, 4)
STATE_MMA(gla_fwd_state_bf16_k256_v32_w8, bf16_t, 256, 32, 8)
STATE_MMA(gla_fwd_state_bf16_k256_v64_w8, bf16_t, 256, 64, 8)
STATE_MMA(gla_fwd_state_f16_k64_v32, f16_t, 64, 32, 4)
STATE_MMA(gla_fwd_state_f16_k64_v64, f16_t, 64, 64, 4)
STATE_MMA(gla_fwd_state_f16_k128_v32, f16_t, 128, 32, 4)
STATE_MMA(gla_fwd_state_f16_k128_v32_w8, f16_t, 128, 32, 8)
STATE_MMA(gla_fwd_state_f16_k128_v64_w8, f16_t, 128, 64, 8)
STATE_MMA(gla_fwd_state_f16_k128_v128_w8, f16_t, 128, 128, 8)
STATE_MMA(gla_fwd_state_f16_k256_v32, f16_t, 256, 32, 4)
STATE_MMA(gla_fwd_state_f16_k256_v32_w8, f16_t, 256, 32, 8)
STATE_MMA(gla_fwd_state_f16_k256_v64_w8, f16_t, 256, 64, 8)
STATE_F32(gla_fwd_state_f32_k64, 64)
STATE_F32(gla_fwd_state_f32_k128, 128)
STATE_F32(gla_fwd_state_f32_k256, 256)
