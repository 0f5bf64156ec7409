/* kernels_nvptx.h - included before the kernels by tests/kernels_nvptx.sh,
 * which runs NVIDIA-only builds through clang's OpenCL front end for
 * nvptx: clang 14's opencl-c.h declares the half loads and stores only for
 * targets it knows to have them, and spells inline assembly __asm__ in
 * OpenCL. Both exist in OpenCL 1.2 C and in NVIDIA's compiler. */
float __attribute__((overloadable)) vload_half(size_t, const __global half *);
float __attribute__((overloadable)) vload_half(size_t, const __local half *);
float __attribute__((overloadable)) vload_half(size_t, const __constant half *);
float __attribute__((overloadable)) vload_half(size_t, const __private half *);
void __attribute__((overloadable)) vstore_half(float, size_t, __global half *);
void __attribute__((overloadable)) vstore_half(float, size_t, __local half *);
void __attribute__((overloadable)) vstore_half_rte(float, size_t, __global half *);
void __attribute__((overloadable)) vstore_half_rte(float, size_t, __local half *);
void __attribute__((overloadable)) vstore_half_rte(float, size_t, __private half *);
void __attribute__((overloadable)) vstore_half2_rte(float2, size_t, __private half *);
#define asm __asm__
