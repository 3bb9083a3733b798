// ggml_types.cpp: ggml's type table, and one decoder per block type. Legend: d, dmin = fp16 block scales; qs =
// packed low bits, qh = high bits; a K-quant super-block holds 256 weights in sub-blocks of 32
// (Q4_K/Q5_K, with 6-bit scales and mins) or 16 (Q6_K, with int8 scales).
#include "formats/ggml_types.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/fp16.h"

namespace effort {

namespace {

float half_at(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return kernels::half_to_float(h);
}

// Q4_0: d, 16 bytes of 4-bit q; w = d * (q - 8), low nibbles first then high.
void q4_0(const std::uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float((b[2 + j] & 0xF) - 8);
    y[j + 16] = d * float((b[2 + j] >> 4) - 8);
  }
}

// Q4_1: d, m, 16 bytes of 4-bit q; w = d * q + m.
void q4_1(const std::uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(b[4 + j] & 0xF) + m;
    y[j + 16] = d * float(b[4 + j] >> 4) + m;
  }
}

// Q5_0 / Q5_1: the fifth bits in a 32-bit qh (bit j for weight j); Q5_0 centred on 16, Q5_1
// with a min.
void q5(const std::uint8_t* b, float* y, bool with_min) {
  const float d = half_at(b), m = with_min ? half_at(b + 2) : 0.0f;
  const std::uint8_t* rest = b + (with_min ? 4 : 2);
  std::uint32_t qh;
  std::memcpy(&qh, rest, 4);
  const std::uint8_t* qs = rest + 4;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0xF) | int(((qh >> j) & 1) << 4), hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    if (with_min) {
      y[j] = d * float(lo) + m;
      y[j + 16] = d * float(hi) + m;
    } else {
      y[j] = d * float(lo - 16);
      y[j + 16] = d * float(hi - 16);
    }
  }
}

void q8_0(const std::uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 32; ++j) y[j] = d * float(std::int8_t(b[2 + j]));
}

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (12 packed bytes).
void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = std::uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = std::uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K: d, dmin, 12 bytes of scales/mins, 128 bytes of 4-bit q: w = d*scale*q - dmin*min.
// Q5_K: the same with 32 bytes of fifth bits (qh) before the q.
void q45_k(const std::uint8_t* b, float* y, bool five) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* qh = b + 16;
  const std::uint8_t* q = five ? b + 48 : b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    std::uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    const int bit = j / 32;  // sub-blocks j/32 and j/32 + 1 take bits `bit` and `bit + 1` of qh
    for (int l = 0; l < 32; ++l) {
      const int high1 = five ? ((qh[l] >> bit) & 1) << 4 : 0, high2 = five ? ((qh[l] >> (bit + 1)) & 1) << 4 : 0;
      y[j + l] = d1 * float((q[l] & 0xF) + high1) - m1;
      y[j + 32 + l] = d2 * float((q[l] >> 4) + high2) - m2;
    }
  }
}

// Q6_K: 128 bytes of low 4 bits, 64 of high 2 bits, 16 int8 scales, d: w = d*scale*(q - 32).
void q6_k(const std::uint8_t* b, float* y) {
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
}

void put_half(std::uint8_t* p, float value) {
  const std::uint16_t h = kernels::float_to_half(value);
  std::memcpy(p, &h, 2);
}

// Round half to even, as ggml's nearest_int (its magic-number trick) does.
int nearest_int(float value) { return int(std::nearbyint(value)); }

// Q8_0: d = absmax / 127; q = round(x / d), with 1/d taken before d is rounded to fp16.
void encode_q8_0(const float* x, std::uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
  put_half(b, d);
  for (int j = 0; j < 32; ++j) b[2 + j] = std::uint8_t(std::int8_t(std::round(x[j] * id)));
}

// Q4_0: d = (the signed value of largest magnitude) / -8, so it maps to q = 0; q = x/d + 8
// truncated after adding 0.5, at most 15.
void encode_q4_0(const float* x, std::uint8_t* b) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
  const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  put_half(b, d);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(std::int8_t(x[j] * id + 8.5f)));
    const int hi = std::min(15, int(std::int8_t(x[j + 16] * id + 8.5f)));
    b[2 + j] = std::uint8_t(lo | (hi << 4));
  }
}

// One Q4_K sub-block of 32: the scale and (non-positive) min whose levels 0..15 minimise the
// weighted squared error, searched over 21 candidate scales around (max - min) / 15 and refined
// by weighted least squares (ggml's make_qkx2_quants with rmin -1, rdelta 0.1, 20 steps).
// Returns the scale, sets minus_min = -min and the levels.
float fit_scale_min(const float* x, const float* w, int* levels, float& minus_min) {
  constexpr int n = 32, nmax = 15, steps = 20;
  float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(levels, levels + n, 0);
    minus_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
  for (int i = 0; i < n; ++i) {
    levels[i] = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
    const float diff = scale * float(levels[i]) + min - x[i];
    best_error += w[i] * diff * diff;
  }
  int candidate[n];
  for (int step = 0; step <= steps; ++step) {
    iscale = (-1.0f + 0.1f * float(step) + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      candidate[i] = l;
      sum_l += w[i] * float(l);
      sum_l2 += w[i] * float(l) * float(l);
      sum_xl += w[i] * float(l) * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) this_min = 0, this_scale = sum_xl / sum_l2;
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * float(candidate[i]) + this_min - x[i];
      error += w[i] * diff * diff;
    }
    if (error < best_error) {
      std::copy(candidate, candidate + n, levels);
      best_error = error, scale = this_scale, min = this_min;
    }
  }
  minus_min = -min;
  return scale;
}

// Q4_K: each sub-block's scale and min fitted, then both quantized to 6 bits against the
// super-block's largest (d = max scale / 63, dmin = max min / 63), and the levels recomputed
// with the quantized values.
void encode_q4_k(const float* x, std::uint8_t* b) {
  float scales[8], mins[8], weights[32];
  int levels[256];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(xs, weights, levels + 32 * j, mins[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::uint8_t* packed = b + 4;
  std::fill(packed, packed + 12, std::uint8_t(0));
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, nearest_int(inv_scale * scales[j])), lm = std::min(63, nearest_int(inv_min * mins[j]));
    if (j < 4) {
      packed[j] = std::uint8_t(ls);
      packed[j + 4] = std::uint8_t(lm);
    } else {
      packed[j + 4] = std::uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= std::uint8_t((ls >> 4) << 6);
      packed[j] |= std::uint8_t((lm >> 4) << 6);
    }
  }
  put_half(b, max_scale / 63.0f);
  put_half(b + 2, max_min / 63.0f);
  const float d = half_at(b), dmin = half_at(b + 2);
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, m;
    scale_min_k4(j, packed, sc, m);
    const float dj = d * float(sc), mj = dmin * float(m);
    if (dj == 0) continue;
    for (int l = 0; l < 32; ++l) levels[32 * j + l] = std::clamp(nearest_int((x[32 * j + l] + mj) / dj), 0, 15);
  }
  std::uint8_t* q = b + 16;
  for (int j = 0; j < 256; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = std::uint8_t(levels[j + l] | (levels[j + l + 32] << 4));
}

// Every ggml type this project knows the size of; decode/encode null where it does not read
// or write it. Knowing a type's size lets a reader check a file that holds it.
struct TypeInfo {
  std::uint32_t type;
  const char* name;
  std::size_t elements, bytes;                    // per block (1 element for the float types)
  void (*decode)(const std::uint8_t*, float*);    // block types only
  void (*encode)(const float*, std::uint8_t*);
};

constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4, nullptr, nullptr},
    {1, "F16", 1, 2, nullptr, nullptr},
    {2, "Q4_0", 32, 18, q4_0, encode_q4_0},
    {3, "Q4_1", 32, 20, q4_1, nullptr},
    {6, "Q5_0", 32, 22, [](const std::uint8_t* b, float* y) { q5(b, y, false); }, nullptr},
    {7, "Q5_1", 32, 24, [](const std::uint8_t* b, float* y) { q5(b, y, true); }, nullptr},
    {8, "Q8_0", 32, 34, q8_0, encode_q8_0},
    {9, "Q8_1", 32, 36, nullptr, nullptr},
    {10, "Q2_K", 256, 84, nullptr, nullptr},
    {11, "Q3_K", 256, 110, nullptr, nullptr},
    {12, "Q4_K", 256, 144, [](const std::uint8_t* b, float* y) { q45_k(b, y, false); }, encode_q4_k},
    {13, "Q5_K", 256, 176, [](const std::uint8_t* b, float* y) { q45_k(b, y, true); }, nullptr},
    {14, "Q6_K", 256, 210, q6_k, nullptr},
    {15, "Q8_K", 256, 292, nullptr, nullptr},
    {30, "BF16", 1, 2, nullptr, nullptr},
};

const TypeInfo* find(std::uint32_t type) {
  for (const TypeInfo& t : kTypes)
    if (t.type == type) return &t;
  return nullptr;
}

}  // namespace

std::string ggml_type_name(std::uint32_t type) {
  const TypeInfo* t = find(type);
  return t ? std::string(t->name) + " (type " + std::to_string(type) + ")" : "type " + std::to_string(type);
}

std::uint64_t ggml_tensor_bytes(std::uint32_t type, std::uint64_t elements) {
  const TypeInfo* t = find(type);
  return t ? elements / t->elements * t->bytes : 0;
}

std::size_t ggml_block_elements(std::uint32_t type) {
  const TypeInfo* t = find(type);
  return t ? t->elements : 0;
}

bool is_dequantizable(std::uint32_t type) {
  const TypeInfo* t = find(type);
  return t && t->decode;
}

void dequantize(std::uint32_t type, const std::uint8_t* blocks, std::size_t n, float* out) {
  const TypeInfo& t = *find(type);
  for (std::size_t i = 0; i < n / t.elements; ++i) t.decode(blocks + i * t.bytes, out + i * t.elements);
}

bool is_quantizable(std::uint32_t type) {
  const TypeInfo* t = find(type);
  return t && t->encode;
}

std::vector<std::uint8_t> quantize(std::uint32_t type, const float* values, std::size_t n) {
  const TypeInfo& t = *find(type);
  std::vector<std::uint8_t> blocks(n / t.elements * t.bytes);
  for (std::size_t i = 0; i < n / t.elements; ++i) t.encode(values + i * t.elements, blocks.data() + i * t.bytes);
  return blocks;
}

}  // namespace effort
