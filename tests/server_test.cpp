// server_test.cpp: effort-server's request checks and stop strings directly, then the real
// binary over loopback HTTP with cpp-httplib's client: shapes, streaming, greedy output against
// effort-run, per-request effort, every refused input, disconnects, the queue bound, shutdown.
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "lora_fixture.h"
#include "requests.h"
#include "stop_strings.h"
#include "test_util.h"

extern char** environ;

using effort::server::ApiError;
using effort::server::Endpoint;
using effort::server::StopStrings;
using nlohmann::json;

namespace {

// Feeds pieces through StopStrings; returns what a client would have received.
std::string filtered(std::vector<std::string> stops, const std::vector<std::string>& pieces, bool* stopped = nullptr) {
  StopStrings filter(std::move(stops));
  std::string out;
  for (const auto& p : pieces) out += filter.push(p);
  if (!filter.stopped()) out += filter.flush();
  if (stopped) *stopped = filter.stopped();
  return out;
}

}  // namespace

TEST_CASE("stop strings end the answer before them, across pieces, and hold back only possible starts", "[server]") {
  bool stopped = false;
  REQUIRE(filtered({"END"}, {"once upon", " a time E", "N", "D and more"}, &stopped) == "once upon a time ");
  REQUIRE(stopped);
  REQUIRE(filtered({"END"}, {"once ", "EN", "JOY"}, &stopped) == "once ENJOY");
  REQUIRE(!stopped);
  REQUIRE(filtered({"\n\n", "Q:"}, {"A: yes", "\n", "Q", ": no"}, &stopped) == "A: yes\n");
  REQUIRE(stopped);
  // Nothing is held back once a piece rules a stop string out.
  StopStrings filter({"abc"});
  REQUIRE(filter.push("xa").empty() == false);
  REQUIRE(filter.push("b") == "");
  REQUIRE(filter.push("d") == "abd");
}

TEST_CASE("chat messages become the model's chat format", "[server]") {
  using effort::ChatFormat;
  const json chat = json::parse(R"([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello."},
                                    {"role": "user", "content": [{"type": "text", "text": "Bye"}]}])");
  const std::string expected = effort::chat_user_turn(ChatFormat::chatml, "Be brief.", "Hi", true) + "Hello." +
                               effort::chat_answer_end(ChatFormat::chatml) +
                               effort::chat_user_turn(ChatFormat::chatml, "", "Bye", false);
  REQUIRE(effort::server::chat_prompt(chat, ChatFormat::chatml) == expected);
  // A last assistant message is continued, not closed.
  const json prefix = json::parse(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well,"}])");
  REQUIRE(effort::server::chat_prompt(prefix, ChatFormat::mistral) ==
          effort::chat_user_turn(ChatFormat::mistral, "", "Hi", true) + "Well,");
  for (const char* bad : {R"([])", R"([{"role": "robot", "content": "x"}])", R"([{"role": "assistant", "content": "x"}])",
                          R"([{"role": "user", "content": 3}])", R"([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}])"})
    REQUIRE_THROWS_AS(effort::server::chat_prompt(json::parse(bad), ChatFormat::mistral), ApiError);
}

TEST_CASE("requests are parsed with their defaults and every bad field is named", "[server]") {
  const effort::Model model = effort::Model::load(test::fixture_model());
  const effort::server::RequestDefaults defaults;
  auto parse = [&](const std::string& body, Endpoint e = Endpoint::completions) {
    return effort::server::parse_request(body, e, model, 64, defaults);
  };
  const auto r = parse(R"({"prompt": "Once upon a time", "temperature": 0, "seed": 7, "stop": "x", "unknown": {"a": 1}})");
  REQUIRE(r.prompt == model.tokenizer()->encode("Once upon a time", true));
  REQUIRE(r.generate.sampling.temperature == 0);
  REQUIRE(r.generate.sampling.seed == 7);
  REQUIRE(r.generate.max_new_tokens == 64 - int(r.prompt.size()));  // the rest of the context
  REQUIRE(r.stop == std::vector<std::string>{"x"});
  REQUIRE(parse(R"({"prompt": [1, 2, 3]})").prompt == std::vector<effort::Token>{1, 2, 3});

  const std::pair<const char*, const char*> bad[] = {
      {"{", "not valid JSON"},
      {"[1]", "must be a JSON object"},
      {R"({})", "'prompt' is required"},
      {R"({"prompt": 5})", "'prompt' must be a string or"},
      {R"({"prompt": [1, 9999]})", "token ids must be integers in [0, 512)"},
      {R"({"prompt": "x", "max_tokens": -1})", "'max_tokens' must be in [0,"},
      {R"({"prompt": "x", "max_tokens": "ten"})", "'max_tokens' must be an integer"},
      {R"({"prompt": "x", "temperature": "hot"})", "'temperature' must be a number"},
      {R"({"prompt": "x", "top_p": 0})", "'top_p' must be in (0, 1]"},
      {R"({"prompt": "x", "min_p": 2})", "'min_p' must be in [0, 1]"},
      {R"({"prompt": "x", "top_k": 1.5})", "'top_k' must be an integer"},
      {R"({"prompt": "x", "stream": "yes"})", "'stream' must be true or false"},
      {R"({"prompt": "x", "stop": [1]})", "'stop' must be a string or an array of strings"},
      {R"({"prompt": "x", "effort": 0})", "'effort' must be in (0, 1]"},
      {R"({"prompt": "x", "effort": 1.5})", "'effort' must be in (0, 1]"},
      {R"({"prompt": "x", "effort": 0.5})", "effort below 1 needs a .effort model"},
      {R"({"prompt": "x", "effort_map": {"down": 0.5}})", "effort below 1 needs a .effort model"},
      {R"({"prompt": "x", "head_effort": 1.5})", "'head_effort' must be in [0, 1]"},
      {R"({"prompt": "x", "head_effort": 0.5})", "'head_effort' below 1 needs a .effort model with a bucketed head"},
      {R"({"prompt": "x", "effort_map": {"sideways": 0.5}})", "unknown matrix kind 'sideways'"},
      {R"({"prompt": "x", "early_exit": "soon"})", "'early_exit' must be true, false or"},
      {R"({"prompt": "x", "n": 2})", "'n' must be in [1, 1]"},
      {R"({"prompt": "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a"})",
       "the context holds 64 positions"},
  };
  for (const auto& [body, message] : bad) {
    INFO(body);
    try {
      parse(body);
      FAIL("accepted");
    } catch (const ApiError& e) {
      REQUIRE(e.status == 400);
      REQUIRE_THAT(e.what(), Catch::Contains(message));
    }
  }
  REQUIRE_THROWS_WITH(parse(R"({"prompt": "x"})", Endpoint::chat_completions), Catch::Contains("'messages' is required"));
}

namespace {

// effort-server started on a free loopback port; SIGTERM and a wait on destruction.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    std::vector<std::string> argv_strings = {std::string(EFFORT_BIN_DIR) + "/effort-server", "--port", "0"};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    stderr_ = ::fdopen(pipe_fds[0], "r");
    // The port is in the line the server prints once it listens.
    char line[1024];
    while (std::fgets(line, sizeof line, stderr_)) {
      log_ += line;
      if (const char* at = std::strstr(line, "listening on http://127.0.0.1:")) {
        port_ = std::atoi(at + std::strlen("listening on http://127.0.0.1:"));
        break;
      }
    }
    INFO(log_);
    REQUIRE(port_ > 0);
  }
  ~ServerProcess() {
    if (pid_ > 0) stop();
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    return c;
  }
  // SIGTERM, then the exit code (128 + signal when killed by one) and the rest of stderr.
  int stop() {
    ::kill(pid_, SIGTERM);
    char line[1024];
    while (std::fgets(line, sizeof line, stderr_)) log_ += line;
    std::fclose(stderr_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  FILE* stderr_ = nullptr;
  int port_ = 0;
  std::string log_;
};

json post(httplib::Client& c, const std::string& path, const json& body, int expected_status = 200) {
  const auto r = c.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == expected_status);
  return json::parse(r->body);
}

// The text and last chunk of a streamed answer, from its server-sent events.
struct Streamed {
  std::string text;
  json last;
  int events = 0;
  bool done = false;
};

Streamed stream(httplib::Client& c, const std::string& path, json body) {
  body["stream"] = true;
  Streamed s;
  std::string buffer;
  const auto r = c.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  REQUIRE(r->get_header_value("Content-Type") == "text/event-stream");
  buffer = r->body;
  for (std::size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
    const std::string event = buffer.substr(0, end);
    REQUIRE(event.rfind("data: ", 0) == 0);
    REQUIRE(!s.done);  // nothing after [DONE]
    if (event == "data: [DONE]") {
      s.done = true;
      continue;
    }
    const json chunk = json::parse(event.substr(6));
    const json& choice = chunk["choices"][0];
    s.text += choice.contains("text") ? choice["text"].get<std::string>() : choice["delta"].value("content", "");
    s.last = chunk;
    ++s.events;
  }
  REQUIRE(buffer.empty());
  return s;
}

json health(httplib::Client& c) {
  const auto r = c.Get("/health");
  REQUIRE(r);
  return json::parse(r->body);
}

// Polls /health until pred holds; false after `seconds`. A poll that fails (a slow server under
// ThreadSanitizer may drop one) is retried.
bool wait_for(httplib::Client& c, const std::function<bool(const json&)>& pred, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (const auto r = c.Get("/health"); r && r->status == 200 && pred(json::parse(r->body))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Joins a thread when the scope ends, also when a failed REQUIRE leaves it early.
struct Joined {
  std::thread thread;
  ~Joined() {
    if (thread.joinable()) thread.join();
  }
};

const json kStory = {{"prompt", "Once upon a time"}, {"max_tokens", 40}};

}  // namespace

TEST_CASE("effort-server answers in OpenAI's shapes, streaming or not", "[server][http]") {
  ServerProcess server({"-m", test::fixture_model().string()});
  auto c = server.client();

  const json models = json::parse(c.Get("/v1/models")->body);
  REQUIRE(models["object"] == "list");
  REQUIRE(models["data"][0]["id"] == "stories260K");
  REQUIRE(models["data"][0]["meta"]["n_ctx"] == 512);
  REQUIRE(health(c)["status"] == "ok");
  REQUIRE(c.Get("/")->body.find("<title>effort</title>") != std::string::npos);

  json body = kStory;
  body["seed"] = 42;
  const json plain = post(c, "/v1/completions", body);
  REQUIRE(plain["object"] == "text_completion");
  REQUIRE(plain["choices"][0]["finish_reason"] == "length");
  REQUIRE(plain["usage"]["prompt_tokens"] == 5);  // BOS + "Once upon a time"
  REQUIRE(plain["usage"]["completion_tokens"] == 40);
  REQUIRE(plain["usage"]["total_tokens"] == 45);
  REQUIRE(plain["timings"]["predicted_n"] == 40);
  REQUIRE(plain["timings"]["multiplications"] == 1.0);
  REQUIRE(plain["timings"]["seed"] == 42);

  // Same seed: the streamed pieces reassemble into the same text, on both endpoints.
  const Streamed streamed = stream(c, "/v1/completions", body);
  REQUIRE(streamed.done);
  REQUIRE(streamed.text == plain["choices"][0]["text"]);
  REQUIRE(streamed.last["choices"][0]["finish_reason"] == "length");
  REQUIRE(streamed.last["usage"] == plain["usage"]);

  const json chat_body = {{"messages", {{{"role", "user"}, {"content", "Tell me a story."}}}}, {"max_tokens", 30}, {"seed", 3}};
  const json chat = post(c, "/v1/chat/completions", chat_body);
  REQUIRE(chat["object"] == "chat.completion");
  REQUIRE(chat["choices"][0]["message"]["role"] == "assistant");
  const Streamed chat_streamed = stream(c, "/v1/chat/completions", chat_body);
  REQUIRE(chat_streamed.last["object"] == "chat.completion.chunk");
  REQUIRE(chat_streamed.text == chat["choices"][0]["message"]["content"]);

  // A stop string ends the answer before it, streaming or not.
  json stopped = kStory;
  stopped["temperature"] = 0;
  stopped["stop"] = "girl";
  const json s = post(c, "/v1/completions", stopped);
  REQUIRE(s["choices"][0]["finish_reason"] == "stop");
  REQUIRE(s["choices"][0]["text"] == ", there was a little ");
  REQUIRE(stream(c, "/v1/completions", stopped).text == ", there was a little ");

  const json tokens = post(c, "/tokenize", {{"content", "Once upon a time"}, {"add_special", true}});
  REQUIRE(tokens["tokens"].size() == 5);
  REQUIRE(post(c, "/detokenize", tokens)["content"] == "Once upon a time");
  REQUIRE(server.stop() == 0);
}

TEST_CASE("effort-server's greedy answer is effort-run --temp 0's", "[server][http]") {
  const std::string prompt = "The little dog";
  const auto run = test::run_command(std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + test::fixture_model().string() +
                                     "' -p '" + prompt + "' -n 60 --temp 0 2>/dev/null");
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.output.rfind(prompt, 0) == 0);
  const std::string expected = run.output.substr(prompt.size(), run.output.size() - prompt.size() - 1);  // less "\n"
  ServerProcess server({"-m", test::fixture_model().string(), "--parallel", "1"});
  auto c = server.client();
  const json r = post(c, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 60}, {"temperature", 0}});
  REQUIRE(r["choices"][0]["text"] == expected);
}

TEST_CASE("effort-server applies each request's effort", "[server][http][effort]") {
  test::TempDir dir;
  const std::string model = (dir / "m.effort").string();
  REQUIRE(test::run_command(std::string(EFFORT_BIN_DIR) + "/effort-convert '" + test::fixture_model().string() +
                            "' -o '" + model + "'").exit_code == 0);
  ServerProcess server({"-m", model});
  auto c = server.client();
  auto fraction = [&](json body) { return post(c, "/v1/completions", body)["timings"]["multiplications"].get<double>(); };
  json body = kStory;
  REQUIRE(fraction(body) == 1.0);
  body["effort"] = 0.5;
  const double half = fraction(body);
  body["effort"] = 0.25;
  const double quarter = fraction(body);
  // The kernels pick whole units by a sampled cutoff: about the asked fraction, not exactly it.
  REQUIRE(half == Approx(0.5).margin(0.1));
  REQUIRE(quarter == Approx(0.25).margin(0.1));
  REQUIRE(quarter < half);
  body.erase("effort");
  body["effort_map"] = {{"down", 0.25}};
  const double down_only = fraction(body);
  REQUIRE(down_only < 1.0);
  REQUIRE(down_only > half);
  REQUIRE(fraction(kStory) == 1.0);  // nothing carries over to the next request
  // The head follows the effort unless the request sets its own.
  auto head = [&](json body) { return post(c, "/v1/completions", body)["timings"]["head_effort"].get<double>(); };
  body = kStory;
  REQUIRE(head(body) == 1.0);
  body["effort"] = 0.5;
  REQUIRE(head(body) == 0.5);
  body["head_effort"] = 1;
  REQUIRE(head(body) == 1.0);
  body["head_effort"] = 0.375;
  REQUIRE(head(body) == 0.375);
}

TEST_CASE("effort-server refuses bad requests with OpenAI-style errors", "[server][http]") {
  ServerProcess server({"-m", test::fixture_model().string(), "-c", "32", "--max-body", "4096", "--api-key", "secret"});
  httplib::Client open("127.0.0.1", server.port());
  auto c = server.client();
  c.set_bearer_token_auth("secret");

  auto error = [](const httplib::Result& r, int status, const std::string& message) {
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == status);
    const json e = json::parse(r->body)["error"];
    REQUIRE(e["code"] == status);
    REQUIRE_THAT(e["message"].get<std::string>(), Catch::Contains(message));
    REQUIRE(e["type"].is_string());
  };
  error(open.Post("/v1/completions", kStory.dump(), "application/json"), 401, "API key");
  open.set_bearer_token_auth("wrong");
  error(open.Post("/v1/completions", kStory.dump(), "application/json"), 401, "API key");
  error(open.Get("/v1/models"), 401, "API key");
  REQUIRE(open.Get("/health")->status == 200);  // health and the page need no key
  REQUIRE(open.Get("/")->status == 200);

  error(c.Post("/v1/completions", "{\"prompt\": ", "application/json"), 400, "not valid JSON");
  error(c.Post("/v1/completions", R"({"prompt": "x", "temperature": "hot"})", "application/json"), 400, "'temperature'");
  error(c.Post("/v1/completions", R"({"prompt": "x", "effort": 0})", "application/json"), 400, "'effort' must be in (0, 1]");
  error(c.Post("/v1/completions", R"({"prompt": "x", "effort": 0.5})", "application/json"), 400, "needs a .effort model");
  error(c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": -1})", "application/json"), 400, "'max_tokens'");
  error(c.Post("/v1/completions", json{{"prompt", std::string(200, 'a') + " b c d e f g h i j k l m n o p q r s t u v w x y z"}}.dump(),
               "application/json"),
        400, "the context holds 32 positions");
  error(c.Post("/v1/completions", json{{"prompt", std::string(5000, 'a')}}.dump(), "application/json"), 413, "larger than");
  error(c.Post("/tokenize", R"({"content": 5})", "application/json"), 400, "'content' must be a string");
  error(c.Post("/detokenize", R"({"tokens": [1, -4]})", "application/json"), 400, "'tokens' must hold integers");
  error(c.Get("/v2/nothing"), 404, "no such endpoint");
  // Unknown fields are ignored.
  REQUIRE(c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 2, "logit_bias": {}, "user": "me"})", "application/json")->status == 200);
}

namespace {

// Streams `body` from /v1/completions on its own thread; the receiver keeps reading while
// keep_reading() holds, then drops the connection.
std::thread endless_stream(const ServerProcess& server, std::atomic<int>& chunks, std::function<bool()> keep_reading) {
  return std::thread([&server, &chunks, keep_reading] {
    auto c = server.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    req.body = json{{"prompt", "Once upon a time"}, {"max_tokens", 1000000}, {"ignore_eos", true}, {"stream", true}}.dump();
    req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) {
      ++chunks;
      return keep_reading();
    };
    c.send(req);
  });
}

}  // namespace

TEST_CASE("effort-server: the queue bound, and a client that leaves mid-stream frees its session at once", "[server][http]") {
  // One session, no queue, and answers that would run for minutes (no EOS, the context shifting).
  ServerProcess server({"-m", test::fixture_model().string(), "--parallel", "1", "--queue", "0", "--context-shift"});
  auto c = server.client();
  std::atomic<int> chunks{0};
  std::atomic<bool> leave{false};
  // Declared after the reader, so destroyed first: on a failure the reader is told to leave
  // before it is joined.
  struct Leave {
    std::atomic<bool>& flag;
    ~Leave() { flag = true; }
  };
  Joined reader{endless_stream(server, chunks, [&] {
    while (chunks > 2 && !leave) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return !leave;
  })};
  Leave leave_on_exit{leave};
  REQUIRE(wait_for(c, [](const json& h) { return h["sessions_busy"] == 1; }, 30));
  const auto busy = c.Post("/v1/completions", kStory.dump(), "application/json");
  REQUIRE(busy->status == 503);
  REQUIRE_THAT(busy->body, Catch::Contains("every session is busy"));

  leave = true;
  reader.thread.join();
  // Freed within a few tokens of the client leaving, not after a million.
  REQUIRE(wait_for(c, [](const json& h) { return h["sessions_idle"] == 1 && h["requests_cancelled"] == 1; }, 10));
  REQUIRE(c.Post("/v1/completions", kStory.dump(), "application/json")->status == 200);
  REQUIRE(server.stop() == 0);
}

TEST_CASE("effort-server stops on SIGTERM with a stream running, and exits 0", "[server][http]") {
  ServerProcess server({"-m", test::fixture_model().string(), "--context-shift"});
  auto c = server.client();
  std::atomic<int> chunks{0};
  Joined reader{endless_stream(server, chunks, [] { return true; })};
  REQUIRE(wait_for(c, [](const json& h) { return h["sessions_busy"] == 1; }, 30));
  REQUIRE(server.stop() == 0);
  reader.thread.join();  // the stream ended with the server
  REQUIRE_THAT(server.log(), Catch::Contains("SIGTERM, stopping"));
}

TEST_CASE("effort-server runs LoRA adapters per request, chosen by name or id", "[server][http][lora]") {
  test::TempDir dir;
  const effort::Model model = effort::Model::load(test::fixture_model());
  test::RandomAdapter(model.config(), 11, [](int, effort::MatrixKind) { return true; }).write_peft(dir / "persona");
  ServerProcess server({"-m", test::fixture_model().string(), "--lora-scaled", (dir / "persona").string(), "0.8"});
  auto c = server.client();
  const json listed = json::parse(c.Get("/lora-adapters")->body);
  REQUIRE(listed.size() == 1);
  REQUIRE(listed[0]["name"] == "persona");
  REQUIRE(listed[0]["scale"] == 0.8f);
  auto text = [&](const json& lora) {
    json body = kStory;
    body["temperature"] = 0;
    if (!lora.is_null()) body["lora"] = lora;
    return post(c, "/v1/completions", body)["choices"][0]["text"].get<std::string>();
  };
  const std::string by_default = text(json()), none = text(json::array());
  REQUIRE(by_default != none);
  REQUIRE(text(json::parse(R"([{"name": "persona", "scale": 0.8}])")) == by_default);
  REQUIRE(text(json::parse(R"([{"id": 0, "scale": 0.8}])")) == by_default);
  REQUIRE(text(json::parse(R"([{"name": "persona", "scale": 0}])")) == none);
  // The plain request after adapted ones: nothing carries over in the session.
  REQUIRE(text(json::array()) == none);
  const auto bad = c.Post("/v1/completions", R"({"prompt": "x", "lora": [{"name": "nope"}]})", "application/json");
  REQUIRE(bad->status == 400);
  REQUIRE_THAT(json::parse(bad->body)["error"]["message"].get<std::string>(),
               Catch::Contains("no adapter named \"nope\" (loaded: persona)"));
  REQUIRE(c.Post("/v1/completions", R"({"prompt": "x", "lora": [{"id": 3}]})", "application/json")->status == 400);
}
