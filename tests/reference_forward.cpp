// reference_forward.cpp: the double-precision reference of reference_forward.h.
#include "reference_forward.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <string>

#include "effort/config.h"
#include "kernels/fp16.h"
#include "formats/safetensors.h"

namespace test {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

struct ReferenceModel {
  effort::ModelConfig config;
  effort::Checkpoint checkpoint;

  explicit ReferenceModel(const std::filesystem::path& folder)
      : config(effort::ModelConfig::from_file(folder / "config.json")), checkpoint(folder) {}

  MatrixXd tensor(const std::string& name, std::int64_t rows, std::int64_t cols) const {
    const auto& t = checkpoint.get(name, cols ? std::vector<std::int64_t>{rows, cols} : std::vector<std::int64_t>{rows});
    const std::int64_t c = cols ? cols : 1;
    MatrixXd m(rows, c);
    for (std::int64_t i = 0; i < rows * c; ++i) {
      float v = 0;
      switch (t.dtype()) {
        case effort::kernels::DType::f32: v = effort::kernels::weight_at<effort::kernels::DType::f32>(t.data, std::size_t(i)); break;
        case effort::kernels::DType::f16: v = effort::kernels::weight_at<effort::kernels::DType::f16>(t.data, std::size_t(i)); break;
        case effort::kernels::DType::bf16: v = effort::kernels::weight_at<effort::kernels::DType::bf16>(t.data, std::size_t(i)); break;
        case effort::kernels::DType::q8_0: v = effort::kernels::weight_at<effort::kernels::DType::q8_0>(t.data, std::size_t(i)); break;
      }
      m(i / c, i % c) = v;
    }
    return m;
  }

  // Rows of RMS-normalised x (each row a position) times weight.
  MatrixXd rms_norm(const MatrixXd& x, const MatrixXd& weight) const {
    MatrixXd out = x;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const double scale = 1.0 / std::sqrt(x.row(t).squaredNorm() / double(x.cols()) + config.rms_norm_eps);
      out.row(t) = (x.row(t) * scale).cwiseProduct(weight.col(0).transpose());
    }
    return out;
  }

  // Rotate-half RoPE applied to each head of each row.
  MatrixXd rope(MatrixXd x, int heads) const {
    const int hd = config.head_dim, half = hd / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          const double angle = double(t) * std::pow(config.rope_theta, -2.0 * i / hd);
          const double a = x(t, h * hd + i), b = x(t, h * hd + i + half);
          x(t, h * hd + i) = a * std::cos(angle) - b * std::sin(angle);
          x(t, h * hd + i + half) = b * std::cos(angle) + a * std::sin(angle);
        }
    return x;
  }

  MatrixXd forward(const std::vector<int>& ids, std::vector<int> exit_after = {}) const {
    const auto& c = config;
    const std::int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    const std::int64_t hd = c.head_dim, nq = c.num_attention_heads, nkv = c.num_key_value_heads;
    const Eigen::Index T = Eigen::Index(ids.size());
    if (exit_after.empty()) exit_after.assign(ids.size(), c.num_hidden_layers - 1);
    const MatrixXd embed = tensor("model.embed_tokens.weight", V, H);
    MatrixXd h(T, H);
    for (Eigen::Index t = 0; t < T; ++t) h.row(t) = embed.row(ids[std::size_t(t)]);
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const MatrixXd x = rms_norm(h, tensor(p + "input_layernorm.weight", H, 0));
      const MatrixXd q = rope(x * tensor(p + "self_attn.q_proj.weight", nq * hd, H).transpose(), int(nq));
      const MatrixXd k = rope(x * tensor(p + "self_attn.k_proj.weight", nkv * hd, H).transpose(), int(nkv));
      const MatrixXd v = x * tensor(p + "self_attn.v_proj.weight", nkv * hd, H).transpose();
      MatrixXd attended(T, nq * hd);
      for (std::int64_t head = 0; head < nq; ++head) {
        const std::int64_t kvh = head / (nq / nkv);
        MatrixXd scores = q.middleCols(head * hd, hd) * k.middleCols(kvh * hd, hd).transpose() / std::sqrt(double(hd));
        for (Eigen::Index i = 0; i < T; ++i)
          for (Eigen::Index j = 0; j < T; ++j) {
            const bool masked = j > i || (c.sliding_window > 0 && i - j >= c.sliding_window);
            if (masked) scores(i, j) = -INFINITY;
          }
        for (Eigen::Index i = 0; i < T; ++i) {
          const double m = scores.row(i).maxCoeff();
          scores.row(i) = (scores.row(i).array() - m).exp().matrix();
          scores.row(i) /= scores.row(i).sum();
        }
        attended.middleCols(head * hd, hd) = scores * v.middleCols(kvh * hd, hd);
      }
      MatrixXd next = h + attended * tensor(p + "self_attn.o_proj.weight", H, nq * hd).transpose();
      const MatrixXd f = rms_norm(next, tensor(p + "post_attention_layernorm.weight", H, 0));
      auto swiglu = [&](const MatrixXd& x, const std::string& gate_name, const std::string& up_name, const std::string& down_name) {
        const MatrixXd gate = x * tensor(gate_name, I, H).transpose();
        const MatrixXd up = x * tensor(up_name, I, H).transpose();
        const MatrixXd act = (gate.array() / (1.0 + (-gate.array()).exp()) * up.array()).matrix();
        return MatrixXd(act * tensor(down_name, H, I).transpose());
      };
      if (c.num_local_experts == 0) {
        next += swiglu(f, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight");
      } else {
        // MixtralSparseMoeBlock: softmax over the router logits, the top k (torch.topk; ties to
        // the lower index here), their probabilities divided by their sum.
        const std::int64_t E = c.num_local_experts, K = c.num_experts_per_tok;
        const MatrixXd logits = f * tensor(p + "block_sparse_moe.gate.weight", E, H).transpose();
        for (Eigen::Index t = 0; t < T; ++t) {
          Eigen::VectorXd probs = (logits.row(t).array() - logits.row(t).maxCoeff()).exp().matrix().transpose();
          probs /= probs.sum();
          std::vector<int> order(static_cast<std::size_t>(E));
          for (int e = 0; e < E; ++e) order[std::size_t(e)] = e;
          std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs(a) > probs(b); });
          double chosen = 0;
          for (std::int64_t j = 0; j < K; ++j) chosen += probs(order[std::size_t(j)]);
          for (std::int64_t j = 0; j < K; ++j) {
            const int e = order[std::size_t(j)];
            const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
            next.row(t) += probs(e) / chosen * swiglu(f.row(t), x + "w1.weight", x + "w3.weight", x + "w2.weight").row(0);
          }
        }
      }
      for (Eigen::Index t = 0; t < T; ++t)
        if (l <= exit_after[std::size_t(t)]) h.row(t) = next.row(t);
    }
    const MatrixXd head = c.tie_word_embeddings ? embed : tensor("lm_head.weight", V, H);
    return rms_norm(h, tensor("model.norm.weight", H, 0)) * head.transpose();
  }
};

}  // namespace

Logits reference_forward(const std::filesystem::path& folder, const std::vector<int>& ids, std::vector<int> exit_after) {
  const MatrixXd z = ReferenceModel(folder).forward(ids, std::move(exit_after));
  Logits rows(std::size_t(z.rows()), std::vector<double>(std::size_t(z.cols())));
  for (Eigen::Index t = 0; t < z.rows(); ++t)
    for (Eigen::Index i = 0; i < z.cols(); ++i) rows[std::size_t(t)][std::size_t(i)] = z(t, i);
  return rows;
}

}  // namespace test
