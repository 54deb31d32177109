// Integer implicit-GEMM kernels on NVIDIA tensor cores: C[m, n] = sum_k A[m, k] * B[n, k]
// with int8 operands and exact int32 accumulation (mma.sync m16n8k32 .s8, sm_80 and newer),
// then a per-element epilogue (bias, requantize, residual add) stored straight from the
// accumulator registers. backends/tvm/kernels/cuda.py generates one traits struct P per
// kernel (the problem's sizes and constants, how to gather A, the epilogue) and a TIR
// launch shell that calls `qir::igemm<P>`; the build prepends this file to TVM's CUDA
// source (backends/tvm/cuda.py).
//
// A is gathered on the fly from the activation (im2col for a convolution, rows for a
// dense layer), as int8: x - off, where off = 128 for uint8 x (x ^ 0x80) and 0 for int8;
// B holds the constant weights, packed [NP][KP] (zero rows and columns up to the tile
// sizes). The zero point is folded into the bias by the generator: sum (x - zp) w + b =
// sum (x - off) w + (b - (zp - off) sum w), so padding reads zp - off.
//
// One block computes a BM x BN tile of C with NT = 32 * (BM / WM) * (BN / WN) threads; each
// warp a WM x WN sub-tile as (WM / 16) x (WN / 8) mma tiles. K is walked in steps of BK
// bytes through shared memory (rows padded to BK + 16 bytes: the fragment reads below are
// free of bank conflicts), the next step's global loads issued before the current step's
// mma so that they overlap.
//
// Fragments of mma.m16n8k32 (PTX ISA, "Matrix Fragments for mma.m16n8k32"), g = lane / 4,
// t = lane % 4, four int8 per 32-bit register, lowest k in the lowest byte:
//   A (16 x 32, row-major): a0 = A[g][4t..4t+3], a1 = A[g+8][4t..], a2 = A[g][16+4t..],
//                           a3 = A[g+8][16+4t..]
//   B (32 x 8, "col": stored [n][k]): b0 = B[g][4t..4t+3], b1 = B[g][16+4t..]
//   C (16 x 8): c0, c1 = C[g][2t], C[g][2t+1]; c2, c3 = C[g+8][2t], C[g+8][2t+1]
//
// Built with QIR_EMULATE defined, the same code compiles as C++ for the host, where
// tests/backends/tvm/cuda_emulation.h runs each block's threads as host threads and the
// mma by the fragment layout above (tests/backends/tvm/test_tvm_cuda_kernels.py).
#pragma once
#include <stdint.h>

#ifndef QIR_EMULATE
#define QIR_DEV __device__ __forceinline__
#define QIR_ALIGN16 __align__(16)
#endif

namespace qir {

struct Vec16 {  // 16 bytes moved as one vector load / store
  int x, y, z, w;
};

// d += a * b over one warp's fragments: int8 x int8 -> int32, exact.
QIR_DEV void mma_s8(int* d, const unsigned* a, const unsigned* b) {
#ifdef QIR_EMULATE
  emulate_mma_m16n8k32_s8(d, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

QIR_DEV long long clamp64(long long v, long long lo, long long hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Single-rounding rescale (docs/semantics.md): (xi * mul + 2^(n-1)) >> n, n in [1, 62].
QIR_DEV long long round_shift(long long xi, long long mul, int n) {
  return (xi * mul + (1LL << (n - 1))) >> n;
}

// qadd's one rounding of (a - za) ma 2^-na + (b - zb) mb 2^-nb (docs/semantics.md).
QIR_DEV long long add_round(long long a, long long za, long long ma, int na, long long b,
                            long long zb, long long mb, int nb) {
  const int n = na > nb ? na : nb;
  const long long s = (a - za) * ma * (1LL << (n - na)) + (b - zb) * mb * (1LL << (n - nb));
  return (s + (1LL << (n - 1))) >> n;
}

// A convolution's rows of A: output pixel m = (image, oh, ow), k = (c, kh, kw) as in OIHW.
template <int C, int H, int W, int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
          int OH, int OW, int M, int K, unsigned XOR, int PADV>
struct ConvRows {
  struct Row {
    const uint8_t* base;  // the image
    int ih0, iw0;         // top-left input position of the pixel's window
    bool ok;              // m < M
  };
  QIR_DEV static Row row(const uint8_t* x, int m) {
    Row r;
    r.ok = m < M;
    const int mm = r.ok ? m : 0;
    const int img = mm / (OH * OW), p = mm % (OH * OW);
    r.ih0 = (p / OW) * SH - PT;
    r.iw0 = (p % OW) * SW - PL;
    r.base = x + (long long)img * C * H * W;
    return r;
  }
  template <int NW>
  QIR_DEV static void gather(const Row& r, int k0, unsigned (&out)[NW]) {
    int c = k0 / (KH * KW);
    int kh = (k0 % (KH * KW)) / KW, kw = k0 % KW;
#pragma unroll
    for (int i = 0; i < NW; ++i) {
      unsigned word = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int ih = r.ih0 + kh * DH, iw = r.iw0 + kw * DW;
        unsigned v = (unsigned)PADV & 0xffu;
        if (r.ok && c < C && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
          v = (unsigned)r.base[(c * H + ih) * W + iw] ^ XOR;
        word |= v << (8 * j);
        if (++kw == KW) {
          kw = 0;
          if (++kh == KH) {
            kh = 0;
            ++c;
          }
        }
      }
      out[i] = word;
    }
  }
  // NCHW output element of (m, n)
  QIR_DEV static long long out_index(int m, int n, int N) {
    const int img = m / (OH * OW), p = m % (OH * OW);
    return ((long long)img * N + n) * (OH * OW) + p;
  }
};

// A convolution's rows of A with K ordered (kh, kw, c), for C % 4 == 0: the four values of a
// word are four channels at one tap, so a word needs one window test and four loads at a
// constant stride; when C is a multiple of a thread's chunk, the whole chunk is one tap.
template <int C, int H, int W, int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
          int OH, int OW, int M, int K, unsigned XOR, int PADV>
struct ConvRowsTapMajor {
  static_assert(C % 4 == 0, "channels in whole words");
  using Rows = ConvRows<C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW, M, K, XOR, PADV>;
  using Row = typename Rows::Row;
  QIR_DEV static Row row(const uint8_t* x, int m) { return Rows::row(x, m); }
  QIR_DEV static unsigned word(const Row& r, int tap, int c) {
    const int ih = r.ih0 + (tap / KW) * DH, iw = r.iw0 + (tap % KW) * DW;
    if (!(r.ok && tap < KH * KW && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W))
      return ((unsigned)PADV & 0xffu) * 0x01010101u;
    const uint8_t* p = r.base + (c * H + ih) * W + iw;
    return ((unsigned)p[0] | (unsigned)p[H * W] << 8 | (unsigned)p[2 * H * W] << 16 |
            (unsigned)p[3 * H * W] << 24) ^ (XOR * 0x01010101u);
  }
  template <int NW>
  QIR_DEV static void gather(const Row& r, int k0, unsigned (&out)[NW]) {
    if constexpr (C % (4 * NW) == 0) {  // one tap for the chunk: one window test
      const int tap = k0 / C, c = k0 % C;
      const int ih = r.ih0 + (tap / KW) * DH, iw = r.iw0 + (tap % KW) * DW;
      const bool in = r.ok && tap < KH * KW && (unsigned)ih < (unsigned)H &&
                      (unsigned)iw < (unsigned)W;
      const uint8_t* p = r.base + (in ? (c * H + ih) * W + iw : 0);
#pragma unroll
      for (int i = 0; i < NW; ++i)
        out[i] = in ? ((unsigned)p[4 * i * H * W] | (unsigned)p[(4 * i + 1) * H * W] << 8 |
                       (unsigned)p[(4 * i + 2) * H * W] << 16 |
                       (unsigned)p[(4 * i + 3) * H * W] << 24) ^ (XOR * 0x01010101u)
                    : ((unsigned)PADV & 0xffu) * 0x01010101u;
    } else {
#pragma unroll
      for (int i = 0; i < NW; ++i) out[i] = word(r, (k0 + 4 * i) / C, (k0 + 4 * i) % C);
    }
  }
  QIR_DEV static long long out_index(int m, int n, int N) { return Rows::out_index(m, n, N); }
};

// A dense layer's rows of A: x[m, 0:K], row-major.
template <int M, int K, unsigned XOR>
struct DenseRows {
  struct Row {
    const uint8_t* p;
    bool ok;
  };
  QIR_DEV static Row row(const uint8_t* x, int m) {
    Row r;
    r.ok = m < M;
    r.p = x + (long long)(r.ok ? m : 0) * K;
    return r;
  }
  template <int NW>
  QIR_DEV static void gather(const Row& r, int k0, unsigned (&out)[NW]) {
#pragma unroll
    for (int i = 0; i < NW; ++i) {
      const int k = k0 + 4 * i;
      unsigned word = 0;
      if (K % 4 == 0) {  // rows are 4-byte aligned: one load per word
        if (r.ok && k < K) word = *reinterpret_cast<const unsigned*>(r.p + k) ^ (XOR * 0x01010101u);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (r.ok && k + j < K) word |= ((unsigned)r.p[k + j] ^ XOR) << (8 * j);
      }
      out[i] = word;
    }
  }
  QIR_DEV static long long out_index(int m, int n, int N) { return (long long)m * N + n; }
};

// The kernel body: P gives M, N, KP, BM, BN, BK, WM, WN, NT, the rows of A (P::Rows) and
// the epilogue P::store(out, residual, index, n, acc) of each accumulator (bias not yet
// added). Launched with gridDim = (ceil(M / BM), NP / BN), blockDim = NT.
template <class P>
QIR_DEV void igemm(const uint8_t* __restrict__ x, const uint8_t* __restrict__ w,
                   const void* __restrict__ residual, void* __restrict__ out) {
  constexpr int BM = P::BM, BN = P::BN, BK = P::BK, NT = P::NT, WM = P::WM, WN = P::WN;
  constexpr int LDS = BK + 16;           // shared row stride in bytes
  constexpr int TPR = NT / BM;           // threads per row of the A tile
  constexpr int AW = BK / TPR / 4;       // A words each thread gathers per step
  constexpr int VPR = BK / 16;           // 16-byte vectors per row of the B tile
  constexpr int BV = BN * VPR / NT;      // B vectors each thread loads per step
  constexpr int MI = WM / 16, NI = WN / 8, WARPS_N = BN / WN;
  constexpr int KT = P::KP / BK;
  static_assert(NT % BM == 0 && AW >= 1 && AW * 4 * TPR == BK, "A tile split");
  static_assert(BV >= 1 && BV * NT == BN * VPR, "B tile split");
  static_assert(BK % 32 == 0 && WM % 16 == 0 && WN % 8 == 0, "tile shape");

  __shared__ QIR_ALIGN16 uint8_t As[BM * LDS];
  __shared__ QIR_ALIGN16 uint8_t Bs[BN * LDS];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int ar = tid % BM, ac = tid / BM;  // this thread's row and chunk of the A tile
  const typename P::Rows::Row row = P::Rows::row(x, m0 + ar);

  unsigned areg[AW];
  Vec16 breg[BV];
  int acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;

  auto load = [&](int kt) {
    P::Rows::gather(row, kt * BK + ac * AW * 4, areg);
#pragma unroll
    for (int i = 0; i < BV; ++i) {
      const int v = tid + i * NT, r = v / VPR, c = v % VPR;
      breg[i] = *reinterpret_cast<const Vec16*>(w + (long long)(n0 + r) * P::KP + kt * BK + c * 16);
    }
  };

  load(0);
  for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
    for (int i = 0; i < AW; ++i)
      *reinterpret_cast<unsigned*>(As + ar * LDS + ac * AW * 4 + 4 * i) = areg[i];
#pragma unroll
    for (int i = 0; i < BV; ++i) {
      const int v = tid + i * NT, r = v / VPR, c = v % VPR;
      *reinterpret_cast<Vec16*>(Bs + r * LDS + c * 16) = breg[i];
    }
    __syncthreads();
    if (kt + 1 < KT) load(kt + 1);
#pragma unroll
    for (int ks = 0; ks < BK; ks += 32) {
      unsigned a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const uint8_t* p = As + (wm * WM + i * 16 + g) * LDS + ks + 4 * t;
        a[i][0] = *reinterpret_cast<const unsigned*>(p);
        a[i][1] = *reinterpret_cast<const unsigned*>(p + 8 * LDS);
        a[i][2] = *reinterpret_cast<const unsigned*>(p + 16);
        a[i][3] = *reinterpret_cast<const unsigned*>(p + 8 * LDS + 16);
      }
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const uint8_t* q = Bs + (wn * WN + j * 8 + g) * LDS + ks + 4 * t;
        b[j][0] = *reinterpret_cast<const unsigned*>(q);
        b[j][1] = *reinterpret_cast<const unsigned*>(q + 16);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma_s8(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = m0 + wm * WM + i * 16 + g + (r >> 1) * 8;
        const int n = n0 + wn * WN + j * 8 + 2 * t + (r & 1);
        if (m < P::M && n < P::N)
          P::store(out, residual, P::Rows::out_index(m, n, P::N), n, acc[i][j][r]);
      }
}

// A direct grouped convolution (depthwise and other convolutions with few channels per
// group, where a GEMM would have a tiny K): one thread per output element, int32
// accumulation of (x - zp) w over its group's channels and the window, then P::store.
// P gives the geometry (N, C, H, W, O, G, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW), ZP, the
// input type XT and store; launched with NT-thread blocks over N * O * OH * OW outputs.
template <class P>
QIR_DEV void direct_conv(const uint8_t* __restrict__ xv, const uint8_t* __restrict__ wv,
                         const void* __restrict__ residual, void* __restrict__ out) {
  constexpr int CG = P::C / P::G, OG = P::O / P::G;
  const typename P::XT* x = (const typename P::XT*)xv;
  const int8_t* w = (const int8_t*)wv;
  const long long i = (long long)blockIdx.x * P::NT + threadIdx.x;
  if (i >= (long long)P::N * P::O * P::OH * P::OW) return;
  const int ow = (int)(i % P::OW), oh = (int)((i / P::OW) % P::OH);
  const int o = (int)((i / ((long long)P::OW * P::OH)) % P::O);
  const int img = (int)(i / ((long long)P::OW * P::OH * P::O));
  const int c0 = (o / OG) * CG;
  const int ih0 = oh * P::SH - P::PT, iw0 = ow * P::SW - P::PL;
  int acc = 0;
#pragma unroll 1
  for (int c = 0; c < CG; ++c) {
    const typename P::XT* plane = x + ((long long)img * P::C + c0 + c) * P::H * P::W;
    const int8_t* taps = w + ((long long)o * CG + c) * P::KH * P::KW;
#pragma unroll
    for (int kh = 0; kh < P::KH; ++kh) {
      const int ih = ih0 + kh * P::DH;
      if ((unsigned)ih >= (unsigned)P::H) continue;  // padding reads zp: adds 0
#pragma unroll
      for (int kw = 0; kw < P::KW; ++kw) {
        const int iw = iw0 + kw * P::DW;
        if ((unsigned)iw < (unsigned)P::W)
          acc += ((int)plane[ih * P::W + iw] - P::ZP) * (int)taps[kh * P::KW + kw];
      }
    }
  }
  P::store(out, residual, i, o, acc);
}

}  // namespace qir

