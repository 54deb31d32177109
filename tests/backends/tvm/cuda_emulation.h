// Runs the CUDA kernels of backends/tvm/kernels/gpu_kernels.cuh on the host, for tests on machines
// without a GPU: each block's threads are host threads (shared memory is the kernel's static
// arrays, one block runs at a time, __syncthreads() a barrier of the block), and mma.sync
// m16n8k32 is computed from the 32 lanes' fragments by the layout the PTX ISA gives (the
// same layout gpu_kernels.cuh's comment states). What this checks: the kernel's indexing,
// gathering, tiling, synchronisation and epilogue; what it takes on trust: that the PTX
// fragment layout is as written, which the GPU check (bench/gpu_check.py) confirms.
#pragma once
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#define QIR_EMULATE 1
#define QIR_DEV inline
#define QIR_ALIGN16 __attribute__((aligned(16)))
#define __device__
#define __shared__ static
#define __restrict__
#define __forceinline__ inline

struct dim3_ {
  int x = 0, y = 0, z = 0;
};
inline thread_local dim3_ threadIdx, blockIdx;

namespace emu {
constexpr int kMaxWarps = 32;
inline std::barrier<>* block_barrier = nullptr;
inline std::barrier<>* warp_barriers[kMaxWarps];
struct Exchange {
  unsigned a[32][4];
  unsigned b[32][2];
};
inline Exchange exchange[kMaxWarps];

inline int8_t byte_of(unsigned word, int i) { return (int8_t)((word >> (8 * i)) & 0xff); }
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 for the calling lane: d += A * B.
inline void emulate_mma_m16n8k32_s8(int* d, const unsigned* a, const unsigned* b) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  emu::Exchange& x = emu::exchange[warp];
  std::memcpy(x.a[lane], a, sizeof(x.a[lane]));
  std::memcpy(x.b[lane], b, sizeof(x.b[lane]));
  emu::warp_barriers[warp]->arrive_and_wait();
  const int g = lane / 4, t = lane % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
    long long sum = 0;
    for (int k = 0; k < 32; ++k) {
      // A[row][k]: lane (row % 8) * 4 + (k % 16) / 4, register by (row >= 8, k >= 16)
      const int a_lane = (row % 8) * 4 + (k % 16) / 4;
      const int a_reg = (row >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
      // B[k][col]: lane col * 4 + (k % 16) / 4, register k >= 16
      const int b_lane = col * 4 + (k % 16) / 4;
      const int b_reg = k >= 16 ? 1 : 0;
      sum += (long long)emu::byte_of(x.a[a_lane][a_reg], k % 4) *
             emu::byte_of(x.b[b_lane][b_reg], k % 4);
    }
    d[r] = (int)((unsigned)d[r] + (unsigned)sum);  // wraps like the hardware's s32
  }
  emu::warp_barriers[warp]->arrive_and_wait();  // nobody refills the exchange early
}

namespace emu {
// Run `kernel()` on a grid of gx x gy blocks of `threads` threads, one block at a time.
template <class F>
void launch(int gx, int gy, int threads, F kernel) {
  for (int by = 0; by < gy; ++by)
    for (int bx = 0; bx < gx; ++bx) {
      std::barrier<> block(threads);
      std::vector<std::barrier<>*> warps;
      for (int w = 0; w < threads / 32; ++w) warp_barriers[w] = new std::barrier<>(32);
      block_barrier = &block;
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([=] {
          threadIdx.x = t;
          blockIdx.x = bx;
          blockIdx.y = by;
          kernel();
        });
      for (auto& th : pool) th.join();
      for (int w = 0; w < threads / 32; ++w) delete warp_barriers[w];
    }
}

inline std::vector<uint8_t> read_file(const char* path) {
  FILE* f = std::fopen(path, "rb");
  if (!f) std::exit(2);
  std::vector<uint8_t> data;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  std::fclose(f);
  return data;
}

inline void write_file(const char* path, const void* data, size_t size) {
  FILE* f = std::fopen(path, "wb");
  if (!f || std::fwrite(data, 1, size, f) != size) std::exit(3);
  std::fclose(f);
}
}  // namespace emu
