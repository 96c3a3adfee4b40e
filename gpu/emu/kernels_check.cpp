// Runs the kernels of gpu/kernels/ (compiled as C++ against gpu/emu/emu_ptx.h, each .cu its own
// unit) on the CPU, for bf16, f16 and f32 inputs (f32 also with TF32 operands): the forward (intra
// kernel, every state-kernel layout) and the backward (every state-gradient layout the source has,
// dq / dk / dg in both dg forms, dv, the scalar gates' dg sum), on small problems with partial
// chunks, -inf and -300 log gates, per-channel and scalar gates, h0 and dhT. Checks:
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
#define FWD_STATE_ARGS(T)                                                                        \
  const T *, const float *, const int *, int, int, int, float, const T *, const T *, const T *,  \
      const float *, T *, float *, T *
#define BWD_STATE_ARGS(T)                                                                        \
  const T *, const float *, const int *, int, int, int, float, const T *, const float *, T *,    \
      float *, int
#define DQK_ARGS(T)                                                                              \
  const T *, const T *, const T *, const T *, const float *, int, const int *, int, int, int, int, \
      float, const T *, const T *, const float *, T *, T *, T *, float *, int
#define INTRA_ARGS(T)                                                                            \
  const T *, const T *, const float *, int, const int *, int, int, int, float, T *, T *, T *, float *
#define DV_ARGS(T) const T *, const int *, int, int, int, int, const T *, const T *, const T *, T *, int
#define FS(T, name) void name(FWD_STATE_ARGS(T)) __attribute__((weak));
#define BS(T, name) void name(BWD_STATE_ARGS(T)) __attribute__((weak));
#define LAYOUT_KERNELS(T, t)                                                                     \
  FS(T, gla_fwd_state_##t##_k64_v32) FS(T, gla_fwd_state_##t##_k64_v64)                          \
  FS(T, gla_fwd_state_##t##_k128_v32) FS(T, gla_fwd_state_##t##_k128_v32_w8)                     \
  FS(T, gla_fwd_state_##t##_k128_v64_w8) FS(T, gla_fwd_state_##t##_k128_v128_w8)                 \
  FS(T, gla_fwd_state_##t##_k256_v32) FS(T, gla_fwd_state_##t##_k256_v32_w8)                     \
  FS(T, gla_fwd_state_##t##_k256_v64_w8)                                                         \
  BS(T, gla_bwd_state_##t##_k64) BS(T, gla_bwd_state_##t##_k64_v64) BS(T, gla_bwd_state_##t##_k128) \
  BS(T, gla_bwd_state_##t##_k128_v32_w8) BS(T, gla_bwd_state_##t##_k128_v64_w8)                  \
  BS(T, gla_bwd_state_##t##_k128_v128_w8) BS(T, gla_bwd_state_##t##_k256)                        \
  BS(T, gla_bwd_state_##t##_k256_v32_w8) BS(T, gla_bwd_state_##t##_k256_v64_w8)                  \
  void gla_fwd_intra_tc_##t(INTRA_ARGS(T));                                                      \
  void gla_bwd_dqk_##t(DQK_ARGS(T));                                                             \
  void gla_bwd_dqk_local_##t(DQK_ARGS(T));                                                       \
  void gla_bwd_dv_##t(DV_ARGS(T));                                                               \
  void gla_bwd_dg_reduce_##t(const float*, int, int, T*);
extern "C" {
LAYOUT_KERNELS(bf16_t, bf16)
LAYOUT_KERNELS(f16_t, f16)
void gla_fwd_intra_f32(INTRA_ARGS(float));
void gla_fwd_intra_fast_f32(INTRA_ARGS(float));
#define FS32(K) void gla_fwd_state_f32_k##K(FWD_STATE_ARGS(float), int);
FS32(64) FS32(128) FS32(256)
void gla_bwd_state_f32_k64(BWD_STATE_ARGS(float));
void gla_bwd_state_f32_k128(BWD_STATE_ARGS(float));
void gla_bwd_state_f32_k256(BWD_STATE_ARGS(float));
void gla_bwd_dqk_f32(DQK_ARGS(float));
void gla_bwd_dqk_local_f32(DQK_ARGS(float));
void gla_bwd_dv_f32(DV_ARGS(float));
void gla_bwd_dg_reduce_f32(const float*, int, int, float*);
}

namespace {

// ---------------------------------------------------------------- the kernels of one element type
// Every forward / backward state kernel as one call with the f32 kernels' tf32 flag (the 16-bit
// kernels have none in the forward); the state layouts (K, BV, warps) as gla_gpu::STATE_LAYOUTS.
template <class T> struct Layout {
  int k, bv, nw;
  void (*fwd)(FWD_STATE_ARGS(T));
  void (*bwd)(BWD_STATE_ARGS(T));
  const char* name;
};
#define LAYOUT_TABLE(T, t)                                                                          \
  {64, 32, 4, gla_fwd_state_##t##_k64_v32, gla_bwd_state_##t##_k64, "k64_v32"},                     \
      {64, 64, 4, gla_fwd_state_##t##_k64_v64, gla_bwd_state_##t##_k64_v64, "k64_v64"},             \
      {128, 32, 4, gla_fwd_state_##t##_k128_v32, gla_bwd_state_##t##_k128, "k128_v32"},             \
      {128, 32, 8, gla_fwd_state_##t##_k128_v32_w8, gla_bwd_state_##t##_k128_v32_w8, "k128_v32_w8"}, \
      {128, 64, 8, gla_fwd_state_##t##_k128_v64_w8, gla_bwd_state_##t##_k128_v64_w8, "k128_v64_w8"}, \
      {128, 128, 8, gla_fwd_state_##t##_k128_v128_w8, gla_bwd_state_##t##_k128_v128_w8,            \
       "k128_v128_w8"},                                                                             \
      {256, 32, 4, gla_fwd_state_##t##_k256_v32, gla_bwd_state_##t##_k256, "k256_v32"},             \
      {256, 32, 8, gla_fwd_state_##t##_k256_v32_w8, gla_bwd_state_##t##_k256_v32_w8, "k256_v32_w8"}, \
      {256, 64, 8, gla_fwd_state_##t##_k256_v64_w8, gla_bwd_state_##t##_k256_v64_w8, "k256_v64_w8"}
const Layout<bf16_t> BF16_LAYOUTS[] = {LAYOUT_TABLE(bf16_t, bf16)};
const Layout<f16_t> F16_LAYOUTS[] = {LAYOUT_TABLE(f16_t, f16)};
// f32: one layout (BV = 32, 4 warps) per K; the forward kernel takes the tf32 flag, bound below
template <int K> void fwd_state_f32(FWD_STATE_ARGS(float));
int g_tf32 = 0;  // the f32 kernels' tf32 flag for this run
#define F32_STATE(K)                                                                                 \
  template <> void fwd_state_f32<K>(const float* v, const float* h0, const int* seqs, int T, int H, \
                                    int V, float sc, const float* qg, const float* kgt, const float* A, \
                                    const float* gm, float* o, float* ht, float* hs) {              \
    gla_fwd_state_f32_k##K(v, h0, seqs, T, H, V, sc, qg, kgt, A, gm, o, ht, hs, g_tf32);            \
  }
F32_STATE(64) F32_STATE(128) F32_STATE(256)
const Layout<float> F32_LAYOUTS[] = {
    {64, 32, 4, fwd_state_f32<64>, gla_bwd_state_f32_k64, "k64_v32"},
    {128, 32, 4, fwd_state_f32<128>, gla_bwd_state_f32_k128, "k128_v32"},
    {256, 32, 4, fwd_state_f32<256>, gla_bwd_state_f32_k256, "k256_v32"},
};

template <class T> struct Kernels;
#define KERNELS_16(T, t, NAME, TABLE)                                                                    \
  template <> struct Kernels<T> {                                                                   \
    static constexpr const char* name = NAME;                                                       \
    static constexpr auto intra = gla_fwd_intra_tc_##t;                                             \
    static constexpr auto dqk = gla_bwd_dqk_##t;                                                    \
    static constexpr auto dqk_local = gla_bwd_dqk_local_##t;                                        \
    static constexpr auto dv = gla_bwd_dv_##t;                                                      \
    static constexpr auto dg_reduce = gla_bwd_dg_reduce_##t;                                        \
    static const Layout<T>* layouts(int& n) {                                                       \
      n = 9;                                                                                        \
      return TABLE;                                                                                 \
    }                                                                                               \
  };
KERNELS_16(bf16_t, bf16, "bf16", BF16_LAYOUTS)
KERNELS_16(f16_t, f16, "f16", F16_LAYOUTS)
template <> struct Kernels<float> {
  static constexpr const char* name = "f32";
  static constexpr auto intra = gla_fwd_intra_fast_f32;  // the host's default f32 intra kernel
  static constexpr auto dqk = gla_bwd_dqk_f32;
  static constexpr auto dqk_local = gla_bwd_dqk_local_f32;
  static constexpr auto dv = gla_bwd_dv_f32;
  static constexpr auto dg_reduce = gla_bwd_dg_reduce_f32;
  static const Layout<float>* layouts(int& n) {
    n = 3;
    return F32_LAYOUTS;
  }
};

// element storage: 16-bit patterns for bf16 / f16, f32 values for f32
template <class T> struct Elem {
  typedef u16 S;
  static S from(double x) { return from_f<T>((float)x).x; }
  static double to(S b) {
    T t;
    t.x = b;
    return to_f(t);
  }
  static constexpr S poison = 0x7fc1;
};
template <> struct Elem<float> {
  typedef float S;
  static S from(double x) { return (float)x; }
  static double to(S x) { return x; }
  static constexpr S poison = NAN;
};

struct Rng {
  uint64_t s;
  double uniform() {  // [0, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(s >> 11) / 9007199254740992.0;
  }
};
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

// Gross-error screen of a result (values through `to`) against its f64 reference.
struct Screen {
  bool ok = true;
  std::string line;
  template <class V, class F>
  void check(const char* name, const std::vector<V>& x, const std::vector<double>& ref, F to) {
    double e = 0, m = 0;
    bool finite = true;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xi = to(x[i]);
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

template <class T> bool run_case(const Case& cs, uint64_t seed) {
  typedef Elem<T> E;
  typedef typename E::S S;
  typedef Kernels<T> Kn;
  const int B = cs.b, T_ = cs.t, H = cs.h, K = cs.k, V = cs.v;
  const int GC = cs.scalar_gates ? 1 : K;  // gate columns
  const float scale = 1.0f / std::sqrt((float)K);
  const size_t rows = (size_t)B * T_ * H;
  Rng r{seed};
  auto fill = [&](size_t n) {
    std::vector<S> x(n);
    for (auto& e : x) e = E::from(2 * r.uniform() - 1);
    return x;
  };
  auto val = [](S x) { return E::to(x); };
  std::vector<S> q = fill(rows * K), k = fill(rows * K), v = fill(rows * V), dout = fill(rows * V);
  std::vector<float> g(rows * GC);
  for (auto& x : g) x = (float)(-std::log1p(std::exp(-(8 * r.uniform() - 4))) / 16);
  for (int bb = 0; bb < B; ++bb)  // a reset mid-chunk, a -300 log gate at a chunk start
    for (int c = 0; c < GC; c += 3) {
      g[(((size_t)bb * T_ + T_ / 2) * H + 0) * GC + c] = -INFINITY;
      g[(((size_t)bb * T_ + std::min(64, T_ - 1)) * H + (H - 1)) * GC + c] = -300.0f;
    }
  std::vector<float> h0((size_t)B * H * K * V), dht(h0.size());
  for (auto& x : h0) x = (float)(r.uniform() - 0.5);
  for (auto& x : dht) x = (float)(r.uniform() - 0.5);

  // chunk and sequence tables (fixed-length batch rows, as the host builds them)
  const int NT = (T_ + CH - 1) / CH, NC = B * NT;
  std::vector<int> chunks, seqs;
  for (int bb = 0; bb < B; ++bb) {
    for (int c = 0; c < NT; ++c) chunks.insert(chunks.end(), {bb, c * CH, std::min(CH, T_ - c * CH), 0});
    seqs.insert(seqs.end(), {bb, 0, T_, bb * NT, NT, 0});
  }
  const size_t states = (size_t)NC * H * K * V;
  std::vector<S> qg((size_t)NC * H * CH * K), kgt(qg.size()), A((size_t)NC * H * CH * CH);
  std::vector<float> gamma((size_t)NC * H * K);
  auto P = [](std::vector<S>& x) { return (T*)x.data(); };
  emu::launch({(unsigned)NC, (unsigned)H, 1}, 256, [&] {
    Kn::intra(P(q), P(k), g.data(), GC, chunks.data(), T_, H, K, scale, P(qg), P(kgt), P(A), gamma.data());
  });

  // f64 reference: the recurrence and its gradients (dS accumulates scale q_t do_t^T, then
  // dq_t = scale S_t do_t, dk_t = dS v_t, dv_t = dS^T k_t, dg_t = alpha_t rowsum(dS o S_{t-1}),
  // dS <- diag(alpha_t) dS)
  std::vector<double> o_r(rows * V), ht_r(h0.size()), dq_r(rows * K), dk_r(rows * K), dv_r(rows * V),
      dg_r(rows * GC), dh0_r(h0.size());
  for (int bb = 0; bb < B; ++bb)
    for (int hh = 0; hh < H; ++hh) {
      const size_t st0 = ((size_t)bb * H + hh) * K * V;
      std::vector<double> S_((size_t)(T_ + 1) * K * V);  // S_[t + 1] after token t; S_[0] = h0
      for (size_t i = 0; i < (size_t)K * V; ++i) S_[i] = h0[st0 + i];
      auto alpha = [&](size_t row, int d) { return std::exp((double)g[row * GC + (GC == 1 ? 0 : d)]); };
      for (int t = 0; t < T_; ++t) {
        const size_t row = ((size_t)bb * T_ + t) * H + hh;
        const double* Sp = &S_[(size_t)t * K * V];
        double* Sn = &S_[(size_t)(t + 1) * K * V];
        for (int d = 0; d < K; ++d)
          for (int e = 0; e < V; ++e)
            Sn[d * V + e] = alpha(row, d) * Sp[d * V + e] + val(k[row * K + d]) * val(v[row * V + e]);
        for (int e = 0; e < V; ++e) {
          double s = 0;
          for (int d = 0; d < K; ++d) s += val(q[row * K + d]) * Sn[d * V + e];
          o_r[row * V + e] = scale * s;
        }
      }
      for (size_t i = 0; i < (size_t)K * V; ++i) ht_r[st0 + i] = S_[(size_t)T_ * K * V + i];
      std::vector<double> dS(dht.begin() + st0, dht.begin() + st0 + (size_t)K * V);
      for (int t = T_ - 1; t >= 0; --t) {
        const size_t row = ((size_t)bb * T_ + t) * H + hh;
        const double* Sp = &S_[(size_t)t * K * V];
        const double* Sn = &S_[(size_t)(t + 1) * K * V];
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

  const std::string label = std::string(Kn::name) + (g_tf32 ? "+tf32" : "") + " B" + std::to_string(B) +
                            " T" + std::to_string(T_) + " H" + std::to_string(H) + " K" + std::to_string(K) +
                            " V" + std::to_string(V) + (cs.scalar_gates ? " scalar" : " per-channel");
  auto f32v = [](float x) { return (double)x; };
  bool ok = true;
  std::string fwd_sum, bwd_sum;
  std::vector<S> hs_first;
  int nl = 0;
  const Layout<T>* layouts = Kn::layouts(nl);
  for (int li = 0; li < nl; ++li) {
    const Layout<T>& l = layouts[li];
    if (l.k != K || V % l.bv != 0 || !l.fwd) continue;
    std::vector<S> o(rows * V, E::poison), hs(states, E::poison);
    std::vector<float> ht(h0.size(), NAN);
    emu::launch({(unsigned)(V / l.bv), (unsigned)H, (unsigned)B}, 32 * l.nw, [&] {
      l.fwd(P(v), h0.data(), seqs.data(), T_, H, V, scale, P(qg), P(kgt), P(A), gamma.data(), P(o), ht.data(),
            P(hs));
    });
    Screen sc;
    sc.check("o", o, o_r, val);
    sc.check("hT", ht, ht_r, f32v);
    for (S x : hs) sc.ok &= std::isfinite(val(x));
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
  for (int li = 0; li < nl; ++li) {
    const Layout<T>& l = layouts[li];
    if (l.k != K || V % l.bv != 0 || !l.bwd) continue;
    std::vector<S> dhs(states, E::poison);
    std::vector<float> dh0(h0.size(), NAN);
    emu::launch({(unsigned)(V / l.bv), (unsigned)H, (unsigned)B}, 32 * l.nw, [&] {
      l.bwd(P(dout), dht.data(), seqs.data(), T_, H, V, scale, P(qg), gamma.data(), P(dhs), dh0.data(), g_tf32);
    });
    std::vector<S> dv(rows * V, E::poison);
    emu::launch({(unsigned)NC, (unsigned)H, (unsigned)(V / 64)}, 128, [&] {
      Kn::dv(P(dout), chunks.data(), T_, H, K, V, P(A), P(kgt), P(dhs), P(dv), g_tf32);
    });
    Screen sc;
    sc.check("dv", dv, dv_r, val);
    sc.check("dh0", dh0, dh0_r, f32v);
    std::string sum = "dHs " + std::to_string(hash(dhs)) + " dh0 " + std::to_string(hash(dh0)) + " dv " +
                      std::to_string(hash(dv));
    for (int local = 0; local < 2; ++local) {
      std::vector<S> dq(rows * K, E::poison), dk(rows * K, E::poison), dg(rows * GC, E::poison);
      std::vector<float> dgp(cs.scalar_gates ? rows * K : 1, NAN);
      emu::launch({(unsigned)NC, (unsigned)H, (unsigned)(K / 64)}, 256, [&] {
        (local ? Kn::dqk_local : Kn::dqk)(P(q), P(k), P(v), P(dout), g.data(), GC, chunks.data(), T_, H, K, V,
                                          scale, P(hs_first), P(dhs), gamma.data(), P(dq), P(dk), P(dg),
                                          dgp.data(), g_tf32);
      });
      if (cs.scalar_gates)
        emu::launch({(unsigned)((rows + 127) / 128), 1, 1}, 128,
                    [&] { Kn::dg_reduce(dgp.data(), (int)rows, K, P(dg)); });
      sc.check(local ? "dq(l)" : "dq", dq, dq_r, val);
      sc.check(local ? "dk(l)" : "dk", dk, dk_r, val);
      if (local) sc.check("dg(l)", dg, dg_r, val);  // the reverse-cumsum form: the GPU tests' bound
      for (S x : dg) sc.ok &= std::isfinite(val(x));
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

// With the argument "quick" (the race-detector build, gpu/emu/check.sh --tsan): bf16 and f32 on
// the first and the scalar-gate problem only.
int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  const Case cases[] = {
      {1, 150, 2, 128, 128, false},  // three chunks, the last partial
      {2, 70, 1, 64, 128, false},    // two sequences
      {1, 100, 1, 256, 64, false},
      {1, 130, 2, 128, 64, true},    // scalar gates
  };
  bool ok = true;
  uint64_t seed = 7;
  for (const Case& c : cases) {
    if (!quick || &c == &cases[0] || &c == &cases[3]) {
      ok &= run_case<bf16_t>(c, seed);
      if (!quick) ok &= run_case<f16_t>(c, seed);
      ok &= run_case<float>(c, seed);
    }
    ++seed;
  }
  // f32 with TF32 operands (Precision::Tf32), on one problem of each gate kind
  g_tf32 = 1;
  if (!quick) {
    ok &= run_case<float>(cases[0], 7);
    ok &= run_case<float>(cases[3], 10);
  }
  std::printf("%s\n", ok ? "all checks hold" : "SOME CHECKS FAILED");
  return ok ? 0 : 1;
}
