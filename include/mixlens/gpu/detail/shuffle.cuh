// Warp shuffles for the value types the kernels move between lanes: real,
// complex and affine elements (a struct is shuffled member by member).
#pragma once

#include <cuda_runtime.h>

#include "mixlens/scan.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu::detail {

inline constexpr unsigned full_mask = 0xffffffffu;

template <class T>
struct shuffle;

template <>
struct shuffle<float> {
  __device__ static float up(float v, unsigned d) { return __shfl_up_sync(full_mask, v, d); }
  __device__ static float idx(float v, int lane) { return __shfl_sync(full_mask, v, lane); }
  __device__ static float xor_(float v, int m) { return __shfl_xor_sync(full_mask, v, m); }
};

template <>
struct shuffle<double> {
  __device__ static double up(double v, unsigned d) { return __shfl_up_sync(full_mask, v, d); }
  __device__ static double idx(double v, int lane) { return __shfl_sync(full_mask, v, lane); }
  __device__ static double xor_(double v, int m) { return __shfl_xor_sync(full_mask, v, m); }
};

template <class T>
struct shuffle<complex<T>> {
  __device__ static complex<T> up(complex<T> v, unsigned d) {
    return {shuffle<T>::up(v.real(), d), shuffle<T>::up(v.imag(), d)};
  }
  __device__ static complex<T> idx(complex<T> v, int lane) {
    return {shuffle<T>::idx(v.real(), lane), shuffle<T>::idx(v.imag(), lane)};
  }
  __device__ static complex<T> xor_(complex<T> v, int m) {
    return {shuffle<T>::xor_(v.real(), m), shuffle<T>::xor_(v.imag(), m)};
  }
};

template <class A, class B>
struct shuffle<affine<A, B>> {
  __device__ static affine<A, B> up(const affine<A, B>& v, unsigned d) {
    return {shuffle<A>::up(v.a, d), shuffle<B>::up(v.b, d)};
  }
  __device__ static affine<A, B> idx(const affine<A, B>& v, int lane) {
    return {shuffle<A>::idx(v.a, lane), shuffle<B>::idx(v.b, lane)};
  }
};

}  // namespace mixlens::gpu::detail
