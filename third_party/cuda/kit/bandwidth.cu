// Device-to-device copy bandwidth of GPU 0, the ceiling that the GPU kit (run.sh)
// compares batch-1 decode with. Copies a 4 GiB buffer with cudaMemcpy ten times after
// three warm-ups, times them with CUDA events, and prints the rate counting the bytes
// read and the bytes written (2 x size per copy), as a last line
// "copy_bandwidth_gbps=N" for run.sh. Build: nvcc -O2 -arch=sm_90 -o bandwidth bandwidth.cu
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

static void check(cudaError_t err, const char *what) {
    if (err != cudaSuccess) {
        std::fprintf(stderr, "bandwidth: %s: %s\n", what, cudaGetErrorString(err));
        std::exit(1);
    }
}

int main() {
    const size_t bytes = size_t(4) << 30;
    const int warmups = 3, runs = 10;
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    void *src = nullptr, *dst = nullptr;
    check(cudaMalloc(&src, bytes), "cudaMalloc src");
    check(cudaMalloc(&dst, bytes), "cudaMalloc dst");
    check(cudaMemset(src, 1, bytes), "cudaMemset");
    for (int i = 0; i < warmups; i++) {
        check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "warm-up copy");
    }
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    check(cudaEventRecord(start), "cudaEventRecord");
    for (int i = 0; i < runs; i++) {
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
    }
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    const double gbps = 2.0 * double(bytes) * runs / (ms / 1e3) / 1e9;
    std::printf("device: %s, %d multiprocessors, %.1f GiB\n", prop.name, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / double(size_t(1) << 30));
    std::printf("%d copies of %.1f GiB in %.2f ms (read + write counted)\n", runs,
                double(bytes) / double(size_t(1) << 30), ms);
    std::printf("copy_bandwidth_gbps=%.0f\n", gbps);
    cudaFree(src);
    cudaFree(dst);
    return 0;
}
