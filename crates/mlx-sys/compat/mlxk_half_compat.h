/* Force-included (x86_64 only) before mlx-c's own mlx/c/half.h, whose include guard it shares.
 * mlx-c enables its float16/bfloat16 functions only on aarch64, where the compiler has __fp16
 * and __bf16; mlx-rs needs them everywhere. Here they use MLX's own 16-bit types in C++, and
 * plain 16-bit bit patterns in C (which only bindgen reads: the Rust side defines the types). */
#ifndef MLX_HALF_H
#define MLX_HALF_H

#define HAS_FLOAT16
#define HAS_BFLOAT16

#ifdef __cplusplus
#include "mlx/types/half_types.h"
typedef mlx::core::float16_t float16_t;
typedef mlx::core::bfloat16_t bfloat16_t;
#else
#include <stdint.h>
typedef uint16_t float16_t;
typedef uint16_t bfloat16_t;
#endif

#endif
