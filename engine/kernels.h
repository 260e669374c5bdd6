// Kernels HXP adds to ggml's CPU backend. kernels.cpp installs them through ggml's
// extra-buffer-type hook; each kernel file decides which ops it computes and leaves the
// rest to ggml.
#pragma once

#include <cstddef>

#include "ggml.h"
#include "ggml-cpu-impl.h"

namespace hxp {

// fattn_compute computes a flash-attention op over a prompt batch (fattn.cpp), or
// returns false to leave it to ggml.
bool fattn_compute(ggml_compute_params * params, ggml_tensor * op);

// qmm_work_size sets size to the work buffer a Q8_0 matrix product needs when the int8
// kernel (qmatmul.cpp) computes it, and returns false when the kernel would not.
bool qmm_work_size(const ggml_tensor * op, size_t & size);

// qmm_compute computes a Q8_0 x F32 matrix product (qmatmul.cpp), or returns false to
// leave it to ggml.
bool qmm_compute(ggml_compute_params * params, ggml_tensor * op);

}  // namespace hxp
