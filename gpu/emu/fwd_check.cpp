// Runs the bf16 forward kernels of gpu/kernels/gla_fwd.cu (intra tc + every state-kernel layout)
// on the CPU through gpu/emu/emu_ptx.h, on small problems with partial chunks, -inf and -300 log
// gates, per-channel and scalar gates and an initial state, and checks:
//   1. every state layout (gla_gpu::STATE_LAYOUTS at the problem's K) gives the same o, hT and
//      chunk states Hs bit for bit (the layouts change which warp computes what, never the sums);
//   2. o and hT are near an f64 recurrence on the same (bf16-rounded) inputs: a gross-error screen
//      (max |err| / max |ref| < 0.05), not the error bound, which the GPU tests apply;
// and prints one checksum line per problem, so that two versions of the kernels can be compared
// bit for bit (gpu/emu/check.sh). Build: see check.sh. Exit status 0 when every check holds.
#include "emu_ptx.h"

#include GLA_FWD_CU

#include <algorithm>
#include <string>

namespace {

struct Rng {
  uint64_t s;
  double uniform() {  // [0, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(s >> 11) / 9007199254740992.0;
  }
};

u16 bf16_bits(float x) { return ptx_cvt_rn_bf16(x); }
float bf16_val(u16 b) { return __uint_as_float((u32)b << 16); }

uint64_t fnv(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const unsigned char* c = (const unsigned char*)p;
  for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

typedef void (*StateFn)(const bf16_t*, const float*, const int*, int, int, int, float, const bf16_t*,
                        const bf16_t*, const bf16_t*, const float*, bf16_t*, float*, bf16_t*);
struct Layout {
  int k, bv, nw;
  StateFn f;
  const char* name;
};
const Layout LAYOUTS[] = {
    {64, 32, 4, gla_fwd_state_bf16_k64_v32, "k64_v32"},
    {64, 64, 4, gla_fwd_state_bf16_k64_v64, "k64_v64"},
    {128, 32, 4, gla_fwd_state_bf16_k128_v32, "k128_v32"},
    {128, 32, 8, gla_fwd_state_bf16_k128_v32_w8, "k128_v32_w8"},
    {128, 64, 8, gla_fwd_state_bf16_k128_v64_w8, "k128_v64_w8"},
    {128, 128, 8, gla_fwd_state_bf16_k128_v128_w8, "k128_v128_w8"},
    {256, 32, 4, gla_fwd_state_bf16_k256_v32, "k256_v32"},
    {256, 32, 8, gla_fwd_state_bf16_k256_v32_w8, "k256_v32_w8"},
    {256, 64, 8, gla_fwd_state_bf16_k256_v64_w8, "k256_v64_w8"},
};

struct Case {
  int b, t, h, k, v;
  bool scalar_gates;
};

// One problem: returns false if a check fails.
bool run_case(const Case& cs, uint64_t seed) {
  const int B = cs.b, T = cs.t, H = cs.h, K = cs.k, V = cs.v;
  const int gate_cols = cs.scalar_gates ? 1 : K;
  const float scale = 1.0f / std::sqrt((float)K);
  Rng r{seed};
  std::vector<u16> q((size_t)B * T * H * K), k(q.size()), v((size_t)B * T * H * V);
  for (auto& x : q) x = bf16_bits((float)(2 * r.uniform() - 1));
  for (auto& x : k) x = bf16_bits((float)(2 * r.uniform() - 1));
  for (auto& x : v) x = bf16_bits((float)(2 * r.uniform() - 1));
  std::vector<float> g((size_t)B * T * H * gate_cols);
  for (auto& x : g) {
    const double z = 8 * r.uniform() - 4;
    x = (float)(-std::log1p(std::exp(-z)) / 16);
  }
  // a reset (alpha = 0) mid-chunk and a -300 log gate at a chunk start, on some channels / heads
  for (int bb = 0; bb < B; ++bb)
    for (int c = 0; c < gate_cols; c += 3) {
      g[(((size_t)bb * T + T / 2) * H + 0) * gate_cols + c] = -INFINITY;
      g[(((size_t)bb * T + std::min(64, T - 1)) * H + (H - 1)) * gate_cols + c] = -300.0f;
    }
  std::vector<float> h0((size_t)B * H * K * V);
  for (auto& x : h0) x = (float)(r.uniform() - 0.5);

  // chunk and sequence tables (fixed-length batch rows, as the host builds them)
  const int NT = (T + CH - 1) / CH, NC = B * NT;
  std::vector<int> chunks, seqs;
  for (int bb = 0; bb < B; ++bb) {
    for (int c = 0; c < NT; ++c) chunks.insert(chunks.end(), {bb, c * CH, std::min(CH, T - c * CH), 0});
    seqs.insert(seqs.end(), {bb, 0, T, bb * NT, NT, 0});
  }
  std::vector<u16> qg((size_t)NC * H * CH * K), kgt(qg.size()), A((size_t)NC * H * CH * CH);
  std::vector<float> gamma((size_t)NC * H * K);
  const bf16_t* qp = (const bf16_t*)q.data();
  const bf16_t* kp = (const bf16_t*)k.data();
  emu::launch({(unsigned)NC, (unsigned)H, 1}, 256, [&] {
    gla_fwd_intra_tc_bf16(qp, kp, g.data(), gate_cols, chunks.data(), T, H, K, scale,
                          (bf16_t*)qg.data(), (bf16_t*)kgt.data(), (bf16_t*)A.data(), gamma.data());
  });

  // f64 recurrence on the rounded inputs
  std::vector<double> oref((size_t)B * T * H * V), htref((size_t)B * H * K * V);
  for (int bb = 0; bb < B; ++bb)
    for (int hh = 0; hh < H; ++hh) {
      std::vector<double> S((size_t)K * V);
      for (size_t i = 0; i < S.size(); ++i) S[i] = h0[((size_t)bb * H + hh) * K * V + i];
      for (int t = 0; t < T; ++t) {
        const size_t row = ((size_t)bb * T + t) * H + hh;
        for (int d = 0; d < K; ++d) {
          const double a = std::exp((double)g[row * gate_cols + (cs.scalar_gates ? 0 : d)]);
          const double kd = bf16_val(k[row * K + d]);
          for (int e = 0; e < V; ++e) S[(size_t)d * V + e] = a * S[(size_t)d * V + e] + kd * bf16_val(v[row * V + e]);
        }
        for (int e = 0; e < V; ++e) {
          double s = 0;
          for (int d = 0; d < K; ++d) s += bf16_val(q[row * K + d]) * S[(size_t)d * V + e];
          oref[row * V + e] = scale * s;
        }
      }
      for (size_t i = 0; i < S.size(); ++i) htref[((size_t)bb * H + hh) * K * V + i] = S[i];
    }

  bool ok = true, first = true;
  uint64_t h_o = 0, h_ht = 0, h_hs = 0;
  std::string label = "B" + std::to_string(B) + " T" + std::to_string(T) + " H" + std::to_string(H) +
                      " K" + std::to_string(K) + " V" + std::to_string(V) +
                      (cs.scalar_gates ? " scalar" : " per-channel");
  for (const Layout& l : LAYOUTS) {
    if (l.k != K || V % l.bv != 0) continue;
    std::vector<u16> o(v.size(), 0x7fc1), hs((size_t)NC * H * K * V, 0x7fc1);  // poisoned
    std::vector<float> ht(h0.size(), NAN);
    emu::launch({(unsigned)(V / l.bv), (unsigned)H, (unsigned)B}, 32 * l.nw, [&] {
      l.f((const bf16_t*)v.data(), h0.data(), seqs.data(), T, H, V, scale, (const bf16_t*)qg.data(),
          (const bf16_t*)kgt.data(), (const bf16_t*)A.data(), gamma.data(), (bf16_t*)o.data(),
          ht.data(), (bf16_t*)hs.data());
    });
    double eo = 0, mo = 0, eh = 0, mh = 0;
    bool finite = true;
    for (size_t i = 0; i < o.size(); ++i) {
      const double x = bf16_val(o[i]);
      finite &= std::isfinite(x);
      eo = std::max(eo, std::fabs(x - oref[i]));
      mo = std::max(mo, std::fabs(oref[i]));
    }
    for (size_t i = 0; i < ht.size(); ++i) {
      finite &= std::isfinite(ht[i]);
      eh = std::max(eh, std::fabs(ht[i] - htref[i]));
      mh = std::max(mh, std::fabs(htref[i]));
    }
    for (u16 x : hs) finite &= std::isfinite(bf16_val(x));
    const uint64_t a = fnv(o.data(), o.size() * 2), b = fnv(ht.data(), ht.size() * 4),
                   c = fnv(hs.data(), hs.size() * 2);
    std::printf("  %-13s o err %.3g (of %.3g), hT err %.3g (of %.3g)%s\n", l.name, eo, mo, eh, mh,
                finite ? "" : ", NOT FINITE or unwritten");
    if (!finite || eo > 0.05 * mo || eh > 0.05 * mh) ok = false;
    if (first) {
      h_o = a, h_ht = b, h_hs = c, first = false;
    } else if (a != h_o || b != h_ht || c != h_hs) {
      std::printf("  %-13s differs from the first layout (o %d, hT %d, Hs %d)\n", l.name, a != h_o,
                  b != h_ht, c != h_hs);
      ok = false;
    }
  }
  std::printf("checksum %s: o %016llx hT %016llx Hs %016llx intra %016llx\n", label.c_str(),
              (unsigned long long)h_o, (unsigned long long)h_ht, (unsigned long long)h_hs,
              (unsigned long long)fnv(A.data(), A.size() * 2,
                                      fnv(qg.data(), qg.size() * 2,
                                          fnv(kgt.data(), kgt.size() * 2,
                                              fnv(gamma.data(), gamma.size() * 4)))));
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
