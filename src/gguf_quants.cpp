// gguf_quants.cpp: one decoder per ggml block type. Legend: d, dmin = fp16 block scales; qs =
// packed low bits, qh = high bits; a K-quant super-block holds 256 weights in sub-blocks of 32
// (Q4_K/Q5_K, with 6-bit scales and mins) or 16 (Q6_K, with int8 scales).
#include "gguf_quants.h"

#include <cstring>

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

struct QuantType {
  std::uint32_t type;
  std::size_t elements, bytes;
  void (*decode)(const std::uint8_t*, float*);
};

constexpr QuantType kTypes[] = {
    {2, 32, 18, q4_0},
    {3, 32, 20, q4_1},
    {6, 32, 22, [](const std::uint8_t* b, float* y) { q5(b, y, false); }},
    {7, 32, 24, [](const std::uint8_t* b, float* y) { q5(b, y, true); }},
    {8, 32, 34, q8_0},
    {12, 256, 144, [](const std::uint8_t* b, float* y) { q45_k(b, y, false); }},
    {13, 256, 176, [](const std::uint8_t* b, float* y) { q45_k(b, y, true); }},
    {14, 256, 210, q6_k},
};

const QuantType* find(std::uint32_t type) {
  for (const QuantType& t : kTypes)
    if (t.type == type) return &t;
  return nullptr;
}

}  // namespace

bool is_dequantizable(std::uint32_t type) { return find(type) != nullptr; }

std::size_t quant_block_elements(std::uint32_t type) {
  const QuantType* t = find(type);
  return t ? t->elements : 0;
}

void dequantize(std::uint32_t type, const std::uint8_t* blocks, std::size_t n, float* out) {
  const QuantType& t = *find(type);
  for (std::size_t i = 0; i < n / t.elements; ++i) t.decode(blocks + i * t.bytes, out + i * t.elements);
}

}  // namespace effort
