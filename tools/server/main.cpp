// effort-server: an OpenAI-compatible HTTP server (llama-server's endpoints) with a chat page
// whose effort slider applies to the next request.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "../cli.h"
#include "../exit_flags.h"
#include "chat_page.h"
#include "requests.h"
#include "session_pool.h"
#include "stop_strings.h"

namespace effort::server {
namespace {

using nlohmann::json;

constexpr const char* kUsage = R"(usage: effort-server -m MODEL [options]

Serves MODEL (a .effort file, or a checkpoint that runs dense) over HTTP: the OpenAI endpoints
POST /v1/chat/completions and /v1/completions (streaming with "stream": true), GET /v1/models,
GET /health, POST /tokenize and /detokenize, and a chat page at GET /. Requests may set
"effort" (0..1], "head_effort" ((0..1], default the effort's, see effort-run --help),
"effort_map" ({"down": 0.3, ...}), "early_exit" (true or {"threshold": T}) and
"lora" ([{"name": "persona", "scale": 0.5}] or llama-server's [{"id": 0, "scale": 0.5}]: adapters
loaded with --lora; a request without "lora" runs every one at its start scale, [] none).

options:
  -m, --model PATH     the model (default: $EFFORT_MODEL, else the stories260K demo model)
      --host HOST      address to listen on (default 127.0.0.1: this machine only)
      --port N         port (default 8080; 0: any free port, printed at start)
      --parallel N     sessions serving requests at once (default 2)
      --queue N        requests that may wait for a session; more get 503 (default 16)
  -c, --ctx-size N     KV cache positions per session (default: the model's, at most 4096)
  -t, --threads N      threads per session (default: hardware threads / parallel)
      --api-key KEY    require "Authorization: Bearer KEY" on every endpoint but / and /health
      --effort E       effort of requests that do not set one (default 1)
      --head-effort E  head effort of requests that do not set one (default: their effort's)
      --early-exit     early exit for requests that do not say (see effort-run --help)
      --exit-calibration FILE  per-layer exit thresholds from effort-eval --calibrate
      --context-shift  when a session's context fills, drop the older half and go on
      --alias NAME     the model's name in /v1/models and responses (default: the file name)
      --max-body BYTES largest request body accepted (default 1048576; larger: 413)
      --no-mmap        copy the weights into memory instead of mapping the file
      --lora FILE      load a LoRA adapter (PEFT folder or .safetensors, or llama.cpp GGUF);
                       repeat for several; GET /lora-adapters lists them
      --lora-scaled FILE S  the same, at scale S for requests that do not say
  -h, --help           this text
)";

struct Options {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 2;
  int queue = 16;
  SessionOptions session;
  std::string api_key;
  RequestDefaults defaults;
  std::vector<std::pair<std::string, float>> adapters;  // path, scale
  std::string alias;
  std::size_t max_body = 1 << 20;
  LoadOptions load;
};

Options parse(int argc, char** argv) {
  Options o;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-m" || f == "--model") o.model = args.value();
    else if (f == "--host") o.host = args.value();
    else if (f == "--port") o.port = int(cli::parse_int(f, args.value(), 0, 65535));
    else if (f == "--parallel") o.parallel = int(cli::parse_int(f, args.value(), 1, 256));
    else if (f == "--queue") o.queue = int(cli::parse_int(f, args.value(), 0, 1 << 16));
    else if (f == "-c" || f == "--ctx-size") o.session.context_length = int(cli::parse_int(f, args.value(), 1, 1 << 24));
    else if (f == "-t" || f == "--threads") o.session.num_threads = int(cli::parse_int(f, args.value(), 1, 1024));
    else if (f == "--api-key") o.api_key = args.value();
    else if (f == "--effort") o.defaults.effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--head-effort") o.defaults.head_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--early-exit") o.defaults.early_exit.enabled = true;
    else if (f == "--exit-calibration") cli::apply_exit_calibration(args.value(), o.defaults.early_exit);
    else if (f == "--context-shift") o.defaults.context_shift = true;
    else if (f == "--alias") o.alias = args.value();
    else if (f == "--max-body") o.max_body = std::size_t(cli::parse_int(f, args.value(), 1, 1ll << 32));
    else if (f == "--no-mmap") o.load.use_mmap = false;
    else if (f == "--lora") o.adapters.emplace_back(args.value(), 1.0f);
    else if (f == "--lora-scaled") {
      const std::string path = args.value();
      o.adapters.emplace_back(path, float(cli::parse_number(f, args.value(), -100, 100)));
    }
    else throw cli::UsageError("unknown option " + f + " (see --help)");
  }
  if (o.model.empty()) o.model = cli::default_model();
  if (o.session.num_threads == 0)
    o.session.num_threads = std::max(1, int(std::thread::hardware_concurrency()) / o.parallel);
  if (o.alias.empty()) o.alias = std::filesystem::path(o.model).filename().string();
  return o;
}

json error_body(int status, const std::string& message, const std::string& type) {
  return {{"error", {{"code", status}, {"message", message}, {"type", type}}}};
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type) {
  res.status = status;
  res.set_content(error_body(status, message, type).dump(), "application/json");
}

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One answer: its text, why it ended, and the session's figures for it.
struct Answer {
  std::string text;
  std::string finish_reason;
  GenerateResult result;
  double multiplications = 0;  // fraction of the dense multiply-adds done
  double layers = 0;           // layers run per token (early exit)
  float head_effort = 1;       // the head's, as run
};

class Server {
 public:
  Server(const Options& o, const Model& model)
      : o_(o), model_(model), pool_(model, o.session, o.parallel, o.queue),
        context_length_(pool_.context_length()) {
    routes();
  }

  // Binds, prints the address, and serves until SIGINT or SIGTERM (blocked in every thread;
  // a dedicated thread waits for them). Returns the exit code.
  int run(const sigset_t& signals) {
    const int port = o_.port == 0 ? http_.bind_to_any_port(o_.host) : (http_.bind_to_port(o_.host, o_.port) ? o_.port : -1);
    if (port < 0) throw Error(ErrorCode::io, "cannot listen on " + o_.host + ":" + std::to_string(o_.port));
    std::fprintf(stderr, "effort-server: listening on http://%s:%d (%d sessions, %d threads each, context %d)\n",
                 o_.host.c_str(), port, o_.parallel, o_.session.num_threads, context_length_);
    std::atomic<bool> listening_done{false};
    std::thread waiter([&] {
      int signal = 0;
      sigwait(&signals, &signal);
      if (listening_done) return;
      std::fprintf(stderr, "effort-server: %s, stopping\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
      stopping_ = true;
      pool_.shut_down();
      // stop() acts once the accept loop runs; a signal can come just before it does.
      while (!listening_done) {
        http_.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
    const bool ok = http_.listen_after_bind();
    listening_done = true;
    if (!stopping_) pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    if (!stopping_ && !ok) throw Error(ErrorCode::io, "the server stopped listening on " + o_.host);
    std::fprintf(stderr, "effort-server: stopped after %ld requests\n", long(served_));
    return 0;
  }

 private:
  void routes() {
    // Threads for every request that may run or wait at once, plus a few for /health and the
    // like; more connections wait in httplib's own queue.
    const int threads = o_.parallel + o_.queue + 4;
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(std::size_t(threads)); };
    http_.set_payload_max_length(o_.max_body);
    http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (o_.api_key.empty() || req.path == "/" || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + o_.api_key) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "invalid or missing API key (send \"Authorization: Bearer KEY\")", "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    });
    // Statuses httplib sets itself (404, 413, ...) get a JSON body too.
    http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string message = res.status == 413 ? "the request body is larger than the server accepts (--max-body)"
                                  : res.status == 404 ? "no such endpoint"
                                                      : "the request failed (HTTP " + std::to_string(res.status) + ")";
      send_error(res, res.status, message, res.status == 404 ? "not_found_error" : "invalid_request_error");
    });
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
      std::string message = "internal error";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        message = x.what();
      } catch (...) {
      }
      send_error(res, 500, message, "server_error");
    });

    http_.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kChatPage, "text/html; charset=utf-8"); });
    http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const SessionPool::Status s = pool_.status();
      res.set_content(json{{"status", "ok"},
                           {"sessions_idle", s.idle},
                           {"sessions_busy", s.busy},
                           {"requests_queued", s.queued},
                           {"requests_served", long(served_)},
                           {"requests_cancelled", long(cancelled_)}}
                          .dump(),
                      "application/json");
    });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      const ModelConfig& c = model_.config();
      json meta = {{"layout", model_.layout()},     {"bucketed", model_.bucketed()}, {"n_ctx", context_length_},
                   {"n_layer", c.num_hidden_layers}, {"n_embd", c.hidden_size},       {"n_vocab", c.vocab_size},
                   {"chat_format", chat_format_name(model_.chat_format())}};
      res.set_content(json{{"object", "list"},
                           {"data", {{{"id", o_.alias}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "effort"}, {"meta", meta}}}}}
                          .dump(),
                      "application/json");
    });
    http_.Get("/lora-adapters", [this](const httplib::Request&, httplib::Response& res) {
      json list = json::array();
      for (std::size_t i = 0; i < o_.defaults.adapters.size(); ++i) {
        const AdapterUse& a = o_.defaults.adapters[i];
        list.push_back({{"id", i}, {"name", a.adapter.name()}, {"path", o_.adapters[i].first}, {"scale", a.scale},
                        {"rank", a.adapter.rank()}, {"alpha", a.adapter.alpha()}});
      }
      res.set_content(list.dump(), "application/json");
    });
    http_.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res); });
    http_.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) { detokenize(req, res); });
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, Endpoint::completions);
    });
    http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      complete(req, res, Endpoint::chat_completions);
    });
  }

  const Tokenizer& tokenizer_or_refuse() const {
    if (!model_.tokenizer()) throw ApiError(400, "the model has no tokenizer");
    return *model_.tokenizer();
  }

  static json parse_object(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) throw ApiError(400, "the body is not valid JSON");
    if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
    return j;
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) const {
    try {
      const json body = parse_object(req.body);
      const Tokenizer& tokenizer = tokenizer_or_refuse();
      if (!body.contains("content") || !body["content"].is_string()) throw ApiError(400, "'content' must be a string");
      const bool add_special = body.value("add_special", false), parse_special = body.value("parse_special", true);
      const std::string text = body["content"].get<std::string>();
      const auto tokens = parse_special ? tokenizer.encode_with_special(text, add_special) : tokenizer.encode(text, add_special);
      res.set_content(json{{"tokens", tokens}}.dump(), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type);
    } catch (const json::exception&) {
      send_error(res, 400, "'add_special' and 'parse_special' must be true or false", "invalid_request_error");
    }
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) const {
    try {
      const json body = parse_object(req.body);
      const Tokenizer& tokenizer = tokenizer_or_refuse();
      const int vocab = model_.config().vocab_size;
      if (!body.contains("tokens") || !body["tokens"].is_array()) throw ApiError(400, "'tokens' must be an array of token ids");
      std::vector<Token> tokens;
      for (const json& t : body["tokens"]) {
        if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= vocab)
          throw ApiError(400, "'tokens' must hold integers in [0, " + std::to_string(vocab) + "), got " + t.dump());
        tokens.push_back(Token(t.get<long long>()));
      }
      res.set_content(json{{"content", tokenizer.decode(tokens)}}.dump(), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type);
    }
  }

  // Runs one request on a leased session. emit (when set) receives the answer's text as it
  // grows; it returns false once the client is gone, which ends the answer.
  Answer answer(Session& session, const Request& r, const std::function<bool(const std::string&)>& emit) {
    session.reset();
    session.reset_effort_stats();
    session.set_effort(r.effort);
    session.set_head_effort(r.head_effort);
    for (const auto& [kind, effort] : r.effort_map) session.set_effort(kind, effort);
    session.set_early_exit(r.early_exit);
    session.set_adapters(r.adapters);
    StopStrings stops(r.stop);
    Answer a;
    bool client_gone = false;
    auto send = [&](const std::string& text) {
      a.text += text;
      if (emit && !text.empty() && !emit(text)) client_gone = true;
    };
    a.result = session.generate(std::span<const Token>(r.prompt), r.generate, [&](Token, std::string_view piece) {
      send(stops.push(piece));
      return !client_gone && !stops.stopped() && !stopping_;
    });
    if (!stops.stopped() && !client_gone) send(stops.flush());
    const StopReason why = a.result.stop_reason;
    a.finish_reason = why == StopReason::max_new_tokens || why == StopReason::context_full ? "length" : "stop";
    a.multiplications = session.effort_stats().overall();
    a.layers = session.average_layers();
    a.head_effort = session.head_effort();
    ++served_;
    if (client_gone) ++cancelled_;
    return a;
  }

  static json usage(const Request& r, const Answer& a) {
    const int completion = a.result.stats.generated_tokens;
    return {{"prompt_tokens", int(r.prompt.size())}, {"completion_tokens", completion}, {"total_tokens", int(r.prompt.size()) + completion}};
  }

  // llama-server's timings, and ours: effort, the fraction of multiplications done, layers run.
  static json timings(const Request& r, const Answer& a) {
    const GenerationStats& s = a.result.stats;
    auto per_second = [](int n, double seconds) { return seconds > 0 ? n / seconds : 0.0; };
    return {{"prompt_n", s.prompt_tokens},
            {"prompt_ms", 1e3 * s.prompt_seconds},
            {"prompt_per_second", per_second(s.prompt_tokens, s.prompt_seconds)},
            {"predicted_n", s.generated_tokens},
            {"predicted_ms", 1e3 * s.generation_seconds},
            {"predicted_per_second", per_second(s.generated_tokens, s.generation_seconds)},
            {"effort", r.effort},
            {"head_effort", a.head_effort},
            {"multiplications", a.multiplications},
            {"layers", a.layers},
            {"seed", r.generate.sampling.seed}};
  }

  json envelope(Endpoint endpoint, bool chunk, const std::string& id) const {
    const char* object = endpoint == Endpoint::chat_completions ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                                : "text_completion";
    return {{"id", id}, {"object", object}, {"created", unix_time()}, {"model", o_.alias}};
  }

  // A choice with text (a delta when streaming) and finish_reason (null while streaming).
  static json choice(Endpoint endpoint, bool chunk, const std::string& text, const json& finish_reason) {
    json c = {{"index", 0}, {"finish_reason", finish_reason}};
    if (endpoint == Endpoint::completions) {
      c["text"] = text;
      c["logprobs"] = nullptr;
    } else if (chunk) {
      c["delta"] = text.empty() && finish_reason.is_null() ? json{{"role", "assistant"}, {"content", ""}}
                   : finish_reason.is_null()                ? json{{"content", text}}
                                                            : json::object();
    } else {
      c["message"] = {{"role", "assistant"}, {"content", text}};
    }
    return c;
  }

  void complete(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    std::shared_ptr<Request> request;
    try {
      request = std::make_shared<Request>(parse_request(req.body, endpoint, model_, context_length_, o_.defaults));
    } catch (const ApiError& e) {
      return send_error(res, e.status, e.what(), e.type);
    }
    SessionPool::Acquired acquired = pool_.acquire();
    if (!acquired.lease)
      return send_error(res, 503,
                        acquired.refusal == SessionPool::Refusal::shutting_down
                            ? "the server is shutting down"
                            : "every session is busy and " + std::to_string(o_.queue) + " requests are waiting; try again later",
                        "unavailable_error");
    auto lease = std::make_shared<SessionPool::Lease>(std::move(*acquired.lease));
    const std::string id = std::string(endpoint == Endpoint::chat_completions ? "chatcmpl-" : "cmpl-") +
                           std::to_string(request_ids_++);
    if (!request->stream) {
      const Answer a = answer(lease->session(), *request, {});
      lease.reset();
      json body = envelope(endpoint, false, id);
      body["choices"] = json::array({choice(endpoint, false, a.text, a.finish_reason)});
      body["usage"] = usage(*request, a);
      body["timings"] = timings(*request, a);
      return res.set_content(body.dump(), "application/json");
    }
    // Server-sent events: one chunk per piece of text, a last one with finish_reason, usage and
    // timings, then [DONE]. A failed write means the client left: the answer stops there and
    // the session goes back to the pool.
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, endpoint, id, request, lease](std::size_t, httplib::DataSink& sink) mutable {
      auto event = [&](const json& data) {
        const std::string line = "data: " + data.dump() + "\n\n";
        return sink.write(line.data(), line.size());
      };
      json chunk = envelope(endpoint, true, id);
      bool ok = true;
      if (endpoint == Endpoint::chat_completions) {
        chunk["choices"] = json::array({choice(endpoint, true, "", nullptr)});
        ok = event(chunk);
      }
      const Answer a = answer(lease->session(), *request, [&](const std::string& text) {
        chunk["choices"] = json::array({choice(endpoint, true, text, nullptr)});
        return ok = ok && event(chunk);
      });
      lease.reset();
      if (!ok) return false;
      chunk["choices"] = json::array({choice(endpoint, true, "", a.finish_reason)});
      chunk["usage"] = usage(*request, a);
      chunk["timings"] = timings(*request, a);
      if (!event(chunk)) return false;
      const std::string done = "data: [DONE]\n\n";
      if (!sink.write(done.data(), done.size())) return false;
      sink.done();
      return true;
    });
  }

  const Options& o_;
  const Model& model_;
  SessionPool pool_;
  int context_length_;
  httplib::Server http_;
  std::atomic<bool> stopping_{false};
  std::atomic<long> served_{0}, cancelled_{0}, request_ids_{1};
};

int run(int argc, char** argv) {
  Options o = parse(argc, argv);
  // Every thread started from here on inherits the mask; Server::run waits for the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const Model model = Model::load(o.model, o.load);
  cli::print_model_summary(o.model, model, false);
  if (o.defaults.effort < 1 && !model.bucketed())
    throw cli::UsageError("--effort below 1 needs a .effort model; " + o.model + " runs dense");
  if (o.defaults.head_effort < 1 && o.defaults.head_effort > 0 && !model.bucketed_head())
    throw cli::UsageError("--head-effort below 1 needs a .effort model with a bucketed head; " + o.model + " has none");
  for (const auto& [path, scale] : o.adapters) {
    o.defaults.adapters.push_back({model.load_adapter(path), scale});
    std::fprintf(stderr, "effort-server: adapter %s (%s, rank %d), scale %g\n", o.defaults.adapters.back().adapter.name().c_str(),
                 path.c_str(), o.defaults.adapters.back().adapter.rank(), double(scale));
  }
  Server server(o, model);
  return server.run(signals);
}

}  // namespace
}  // namespace effort::server

int main(int argc, char** argv) { return effort::cli::run_tool("effort-server", argc, argv, effort::server::run); }
