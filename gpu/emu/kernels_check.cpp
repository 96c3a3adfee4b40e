// Runs the bf16 kernels of gpu/kernels/ (compiled as C++ against gpu/emu/emu_ptx.h, each .cu its
// own unit) on the CPU: the forward (intra tc kernel, every state-kernel layout) and the backward
// (every state-gradient layout the source has, dq / dk / dg in both dg forms, dv, the scalar
// gates' dg sum), on small problems with partial chunks, -inf and -300 log gates, per-channel and
// scalar gates, h0 and dhT. Checks:
//   1. every layout gives the same outputs bit for bit (forward: o, hT, Hs; backward: every
//      gradient): a layout changes which warp computes an element, never its sums;
//   2. o, hT, dq, dk, dv, dh0 (and the local form's dg) are near an f64 recurrence and its exact
//      gradients on the same bf16-rounded inputs: a gross-error screen (max |err| < 0.05 max |ref|),
//      not the error bound, which the GPU tests apply on a GPU;
// and prints one checksum line per problem, so that two versions of the kernels can be compared
// bit for bit (gpu/emu/check.sh). Exit status 0 when every check holds.
#include "emu_ptx.h"
#include "gla_common.cuh"

#include <algorithm>
#include <string>

// ---------------------------------------------------------------- the kernels (extern "C")
// Layout variants are weak: a source without one leaves its address null and the layout is skipped.
#define FWD_STATE_ARGS                                                                           \
  const bf16_t *, const float *, const int *, int, int, int, float, const bf16_t *, const bf16_t *, \
      const bf16_t *, const float *, bf16_t *, float *, bf16_t *
#define BWD_STATE_ARGS                                                                           \
  const bf16_t *, const float *, const int *, int, int, int, float, const bf16_t *, const float *, \
      bf16_t *, float *, int
#define DQK_ARGS                                                                                 \
  const bf16_t *, const bf16_t *, const bf16_t *, const bf16_t *, const float *, int, const int *, \
      int, int, int, int, float, const bf16_t *, const bf16_t *, const float *, bf16_t *, bf16_t *, \
      bf16_t *, float *, int
extern "C" {
void gla_fwd_intra_tc_bf16(const bf16_t*, const bf16_t*, const float*, int, const int*, int, int,
                           int, float, bf16_t*, bf16_t*, bf16_t*, float*);
#define FS(name) void name(FWD_STATE_ARGS) __attribute__((weak));
#define BS(name) void name(BWD_STATE_ARGS) __attribute__((weak));
FS(gla_fwd_state_bf16_k64_v32) FS(gla_fwd_state_bf16_k64_v64) FS(gla_fwd_state_bf16_k128_v32)
FS(gla_fwd_state_bf16_k128_v32_w8) FS(gla_fwd_state_bf16_k128_v64_w8) FS(gla_fwd_state_bf16_k128_v128_w8)
FS(gla_fwd_state_bf16_k256_v32) FS(gla_fwd_state_bf16_k256_v32_w8) FS(gla_fwd_state_bf16_k256_v64_w8)
BS(gla_bwd_state_bf16_k64) BS(gla_bwd_state_bf16_k64_v64) BS(gla_bwd_state_bf16_k128)
BS(gla_bwd_state_bf16_k128_v32_w8) BS(gla_bwd_state_bf16_k128_v64_w8) BS(gla_bwd_state_bf16_k128_v128_w8)
BS(gla_bwd_state_bf16_k256) BS(gla_bwd_state_bf16_k256_v32_w8) BS(gla_bwd_state_bf16_k256_v64_w8)
void gla_bwd_dqk_bf16(DQK_ARGS);
void gla_bwd_dqk_local_bf16(DQK_ARGS);
void gla_bwd_dv_bf16(const bf16_t*, const int*, int, int, int, int, const bf16_t*, const bf16_t*,
                     const bf16_t*, bf16_t*, int);
void gla_bwd_dg_reduce_bf16(const float*, int, int, bf16_t*);
}

namespace {

typedef void (*FwdStateFn)(FWD_STATE_ARGS);
typedef void (*BwdStateFn)(BWD_STATE_ARGS);
// (K, BV, warps) as gla_gpu::STATE_LAYOUTS; the forward's and the backward's kernel of each
struct Layout {
  int k, bv, nw;
  FwdStateFn fwd;
  BwdStateFn bwd;
  const char* name;
};
const Layout LAYOUTS[] = {
    {64, 32, 4, gla_fwd_state_bf16_k64_v32, gla_bwd_state_bf16_k64, "k64_v32"},
    {64, 64, 4, gla_fwd_state_bf16_k64_v64, gla_bwd_state_bf16_k64_v64, "k64_v64"},
    {128, 32, 4, gla_fwd_state_bf16_k128_v32, gla_bwd_state_bf16_k128, "k128_v32"},
    {128, 32, 8, gla_fwd_state_bf16_k128_v32_w8, gla_bwd_state_bf16_k128_v32_w8, "k128_v32_w8"},
    {128, 64, 8, gla_fwd_state_bf16_k128_v64_w8, gla_bwd_state_bf16_k128_v64_w8, "k128_v64_w8"},
    {128, 128, 8, gla_fwd_state_bf16_k128_v128_w8, gla_bwd_state_bf16_k128_v128_w8, "k128_v128_w8"},
    {256, 32, 4, gla_fwd_state_bf16_k256_v32, gla_bwd_state_bf16_k256, "k256_v32"},
    {256, 32, 8, gla_fwd_state_bf16_k256_v32_w8, gla_bwd_state_bf16_k256_v32_w8, "k256_v32_w8"},
    {256, 64, 8, gla_fwd_state_bf16_k256_v64_w8, gla_bwd_state_bf16_k256_v64_w8, "k256_v64_w8"},
};

struct Rng {
  uint64_t s;
  double uniform() {  // [0, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(s >> 11) / 9007199254740992.0;
  }
};
u16 bf16_bits(double x) { return ptx_cvt_rn_bf16((float)x); }
double val(u16 b) { return __uint_as_float((u32)b << 16); }
uint64_t fnv(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const unsigned char* c = (const unsigned char*)p;
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}
template <class V> uint64_t hash(const std::vector<V>& v, uint64_t h = 1469598103934665603ull) {
  return fnv(v.data(), v.size() * sizeof(V), h);
}

struct Case {
  int b, t, h, k, v;
  bool scalar_gates;
};

// Gross-error screen of a bf16 (or f32) result against its f64 reference.
struct Screen {
  bool ok = true;
  std::string line;
  template <class V> void check(const char* name, const std::vector<V>& x, const std::vector<double>& ref) {
    double e = 0, m = 0;
    bool finite = true;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xi = sizeof(V) == 2 ? val((u16)x[i]) : (double)x[i];
      finite &= std::isfinite(xi);
      e = std::max(e, std::fabs(xi - ref[i]));
      m = std::max(m, std::fabs(ref[i]));
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, " %s %.2g/%.2g%s", name, e, m, finite ? "" : " NOT FINITE");
    line += buf;
    ok &= finite && e <= 0.05 * m;
  }
};

bool run_case(const Case& cs, uint64_t seed) {
  const int B = cs.b, T = cs.t, H = cs.h, K = cs.k, V = cs.v;
  const int GC = cs.scalar_gates ? 1 : K;  // gate columns
  const float scale = 1.0f / std::sqrt((float)K);
  const size_t rows = (size_t)B * T * H;
  Rng r{seed};
  auto fill = [&](size_t n) {
    std::vector<u16> x(n);
    for (auto& e : x) e = bf16_bits(2 * r.uniform() - 1);
    return x;
  };
  std::vector<u16> q = fill(rows * K), k = fill(rows * K), v = fill(rows * V), dout = fill(rows * V);
  std::vector<float> g(rows * GC);
  for (auto& x : g) x = (float)(-std::log1p(std::exp(-(8 * r.uniform() - 4))) / 16);
  for (int bb = 0; bb < B; ++bb)  // a reset mid-chunk, a -300 log gate at a chunk start
    for (int c = 0; c < GC; c += 3) {
      g[(((size_t)bb * T + T / 2) * H + 0) * GC + c] = -INFINITY;
      g[(((size_t)bb * T + std::min(64, T - 1)) * H + (H - 1)) * GC + c] = -300.0f;
    }
  std::vector<float> h0((size_t)B * H * K * V), dht(h0.size());
  for (auto& x : h0) x = (float)(r.uniform() - 0.5);
  for (auto& x : dht) x = (float)(r.uniform() - 0.5);

  // chunk and sequence tables (fixed-length batch rows, as the host builds them)
  const int NT = (T + CH - 1) / CH, NC = B * NT;
  std::vector<int> chunks, seqs;
  for (int bb = 0; bb < B; ++bb) {
    for (int c = 0; c < NT; ++c) chunks.insert(chunks.end(), {bb, c * CH, std::min(CH, T - c * CH), 0});
    seqs.insert(seqs.end(), {bb, 0, T, bb * NT, NT, 0});
  }
  const size_t states = (size_t)NC * H * K * V;
  std::vector<u16> qg((size_t)NC * H * CH * K), kgt(qg.size()), A((size_t)NC * H * CH * CH);
  std::vector<float> gamma((size_t)NC * H * K);
  auto B16 = [](std::vector<u16>& x) { return (bf16_t*)x.data(); };
  emu::launch({(unsigned)NC, (unsigned)H, 1}, 256, [&] {
    gla_fwd_intra_tc_bf16(B16(q), B16(k), g.data(), GC, chunks.data(), T, H, K, scale, B16(qg), B16(kgt),
                          B16(A), gamma.data());
  });

  // f64 reference: the recurrence and its gradients (dS accumulates scale q_t do_t^T, then
  // dq_t = scale S_t do_t, dk_t = dS v_t, dv_t = dS^T k_t, dg_t = alpha_t rowsum(dS o S_{t-1}),
  // dS <- diag(alpha_t) dS)
  std::vector<double> o_r(rows * V), ht_r(h0.size()), dq_r(rows * K), dk_r(rows * K), dv_r(rows * V),
      dg_r(rows * GC), dh0_r(h0.size());
  for (int bb = 0; bb < B; ++bb)
    for (int hh = 0; hh < H; ++hh) {
      const size_t st0 = ((size_t)bb * H + hh) * K * V;
      std::vector<double> S((size_t)(T + 1) * K * V);  // S[t + 1] after token t; S[0] = h0
      for (size_t i = 0; i < (size_t)K * V; ++i) S[i] = h0[st0 + i];
      auto alpha = [&](size_t row, int d) { return std::exp((double)g[row * GC + (GC == 1 ? 0 : d)]); };
      for (int t = 0; t < T; ++t) {
        const size_t row = ((size_t)bb * T + t) * H + hh;
        const double* Sp = &S[(size_t)t * K * V];
        double* Sn = &S[(size_t)(t + 1) * K * V];
        for (int d = 0; d < K; ++d)
          for (int e = 0; e < V; ++e)
            Sn[d * V + e] = alpha(row, d) * Sp[d * V + e] + val(k[row * K + d]) * val(v[row * V + e]);
        for (int e = 0; e < V; ++e) {
          double s = 0;
          for (int d = 0; d < K; ++d) s += val(q[row * K + d]) * Sn[d * V + e];
          o_r[row * V + e] = scale * s;
        }
      }
      for (size_t i = 0; i < (size_t)K * V; ++i) ht_r[st0 + i] = S[(size_t)T * K * V + i];
      std::vector<double> dS(dht.begin() + st0, dht.begin() + st0 + (size_t)K * V);
      for (int t = T - 1; t >= 0; --t) {
        const size_t row = ((size_t)bb * T + t) * H + hh;
        const double* Sp = &S[(size_t)t * K * V];
        const double* Sn = &S[(size_t)(t + 1) * K * V];
        for (int d = 0; d < K; ++d)
          for (int e = 0; e < V; ++e) dS[d * V + e] += scale * val(q[row * K + d]) * val(dout[row * V + e]);
        for (int d = 0; d < K; ++d) {
          double a = 0, b = 0, c = 0;
          for (int e = 0; e < V; ++e) {
            a += Sn[d * V + e] * val(dout[row * V + e]);
            b += dS[d * V + e] * val(v[row * V + e]);
            c += dS[d * V + e] * Sp[d * V + e];
          }
          dq_r[row * K + d] = scale * a;
          dk_r[row * K + d] = b;
          dg_r[row * GC + (GC == 1 ? 0 : d)] += alpha(row, d) * c;
        }
        for (int e = 0; e < V; ++e) {
          double s = 0;
          for (int d = 0; d < K; ++d) s += dS[d * V + e] * val(k[row * K + d]);
          dv_r[row * V + e] = s;
        }
        for (int d = 0; d < K; ++d)
          for (int e = 0; e < V; ++e) dS[d * V + e] *= alpha(row, d);
      }
      for (size_t i = 0; i < (size_t)K * V; ++i) dh0_r[st0 + i] = dS[i];
    }

  const std::string label = "B" + std::to_string(B) + " T" + std::to_string(T) + " H" + std::to_string(H) +
                            " K" + std::to_string(K) + " V" + std::to_string(V) +
                            (cs.scalar_gates ? " scalar" : " per-channel");
  bool ok = true;
  std::string fwd_sum, bwd_sum;
  std::vector<u16> hs_first;
  for (const Layout& l : LAYOUTS) {
    if (l.k != K || V % l.bv != 0 || !l.fwd) continue;
    std::vector<u16> o(rows * V, 0x7fc1), hs(states, 0x7fc1);  // poisoned
    std::vector<float> ht(h0.size(), NAN);
    emu::launch({(unsigned)(V / l.bv), (unsigned)H, (unsigned)B}, 32 * l.nw, [&] {
      l.fwd(B16(v), h0.data(), seqs.data(), T, H, V, scale, B16(qg), B16(kgt), B16(A), gamma.data(), B16(o),
            ht.data(), B16(hs));
    });
    Screen sc;
    sc.check("o", o, o_r);
    sc.check("hT", ht, ht_r);
    for (u16 x : hs) sc.ok &= std::isfinite(val(x));
    const std::string sum = "o " + std::to_string(hash(o)) + " hT " + std::to_string(hash(ht)) + " Hs " +
                            std::to_string(hash(hs));
    std::printf("  fwd %-13s%s%s\n", l.name, sc.line.c_str(), sc.ok ? "" : "  FAILED");
    ok &= sc.ok;
    if (fwd_sum.empty()) {
      fwd_sum = sum;
      hs_first = hs;
    } else if (sum != fwd_sum) {
      std::printf("  fwd %-13s differs from the first layout\n", l.name);
      ok = false;
    }
  }
  for (const Layout& l : LAYOUTS) {
    if (l.k != K || V % l.bv != 0 || !l.bwd) continue;
    std::vector<u16> dhs(states, 0x7fc1);
    std::vector<float> dh0(h0.size(), NAN);
    emu::launch({(unsigned)(V / l.bv), (unsigned)H, (unsigned)B}, 32 * l.nw, [&] {
      l.bwd(B16(dout), dht.data(), seqs.data(), T, H, V, scale, B16(qg), gamma.data(), B16(dhs), dh0.data(), 0);
    });
    std::vector<u16> dv(rows * V, 0x7fc1);
    emu::launch({(unsigned)NC, (unsigned)H, (unsigned)(V / 64)}, 128, [&] {
      gla_bwd_dv_bf16(B16(dout), chunks.data(), T, H, K, V, B16(A), B16(kgt), B16(dhs), B16(dv), 0);
    });
    Screen sc;
    sc.check("dv", dv, dv_r);
    sc.check("dh0", dh0, dh0_r);
    std::string sum = "dHs " + std::to_string(hash(dhs)) + " dh0 " + std::to_string(hash(dh0)) + " dv " +
                      std::to_string(hash(dv));
    for (int local = 0; local < 2; ++local) {
      std::vector<u16> dq(rows * K, 0x7fc1), dk(rows * K, 0x7fc1), dg(rows * GC, 0x7fc1);
      std::vector<float> dgp(cs.scalar_gates ? rows * K : 1, NAN);
      emu::launch({(unsigned)NC, (unsigned)H, (unsigned)(K / 64)}, 256, [&] {
        (local ? gla_bwd_dqk_local_bf16 : gla_bwd_dqk_bf16)(
            B16(q), B16(k), B16(v), B16(dout), g.data(), GC, chunks.data(), T, H, K, V, scale, B16(hs_first),
            B16(dhs), gamma.data(), B16(dq), B16(dk), B16(dg), dgp.data(), 0);
      });
      if (cs.scalar_gates)
        emu::launch({(unsigned)((rows + 127) / 128), 1, 1}, 128,
                    [&] { gla_bwd_dg_reduce_bf16(dgp.data(), (int)rows, K, B16(dg)); });
      sc.check(local ? "dq(l)" : "dq", dq, dq_r);
      sc.check(local ? "dk(l)" : "dk", dk, dk_r);
      if (local) sc.check("dg(l)", dg, dg_r);  // the reverse-cumsum form is screened by the GPU tests' bound
      for (u16 x : dg) sc.ok &= std::isfinite(val(x));
      sum += std::string(local ? " local" : " cumsum") + " dq " + std::to_string(hash(dq)) + " dk " +
             std::to_string(hash(dk)) + " dg " + std::to_string(hash(dg));
    }
    std::printf("  bwd %-13s%s%s\n", l.name, sc.line.c_str(), sc.ok ? "" : "  FAILED");
    ok &= sc.ok;
    if (bwd_sum.empty()) {
      bwd_sum = sum;
    } else if (sum != bwd_sum) {
      std::printf("  bwd %-13s differs from the first layout\n", l.name);
      ok = false;
    }
  }
  std::printf("checksum %s: intra %llu, %s, %s\n", label.c_str(),
              (unsigned long long)hash(A, hash(qg, hash(kgt, hash(gamma)))), fwd_sum.c_str(), bwd_sum.c_str());
  std::printf("%s %s\n", ok ? "ok" : "FAILED", label.c_str());
  return ok;
}

}  // namespace

int main() {
  const Case cases[] = {
      {1, 150, 2, 128, 128, false},  // three chunks, the last partial
      {2, 70, 1, 64, 128, false},    // two sequences
      {1, 100, 1, 256, 64, false},
      {1, 130, 2, 128, 64, true},    // scalar gates
  };
  bool ok = true;
  uint64_t seed = 7;
  for (const Case& c : cases) ok &= run_case(c, seed++);
  std::printf("%s\n", ok ? "all checks hold" : "SOME CHECKS FAILED");
  return ok ? 0 : 1;
}
