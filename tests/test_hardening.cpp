// Regression tests for the hardening holes of issue 14 at the library level: what the table in
// test_hardening_table.cpp checks through the CLI, here against the functions themselves (file
// type checks, pread instead of mmap, gzip truncation, atomic writes, non-finite detection,
// schedule validation, flag ranges), plus the memory estimate against a real run and signals
// sent to a real `vksd generate` process.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <span>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cli/args.h"
#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/error.h"
#include "runtime/io/file_check.h"
#include "runtime/io/image_io.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/text/prompt.h"
#include "runtime/text/tokenizer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

struct TmpDir {
  fs::path dir = fs::temp_directory_path() / ("vksd_hard_" + std::to_string(::getpid()));
  TmpDir() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TmpDir() { fs::remove_all(dir); }
  std::string p(const std::string& n) const { return (dir / n).string(); }
};

using vksd::test::error_of;

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST_CASE("file checks: every kind of non-regular path is named, and nothing blocks") {
  TmpDir t;
  REQUIRE(::mkfifo(t.p("fifo").c_str(), 0600) == 0);
  fs::create_symlink(t.p("b"), t.p("a"));
  fs::create_symlink(t.p("a"), t.p("b"));
  fs::create_directories(t.p("dir"));
  std::ofstream(t.p("file")) << "x";
  CHECK(vksd::path_kind(t.p("fifo")) == vksd::PathKind::Fifo);
  CHECK(vksd::path_kind(t.p("a")) == vksd::PathKind::SymlinkLoop);
  CHECK(vksd::path_kind(t.p("dir")) == vksd::PathKind::Directory);
  CHECK(vksd::path_kind("/dev/null") == vksd::PathKind::CharDevice);
  CHECK(vksd::path_kind(t.p("file")) == vksd::PathKind::Regular);
  CHECK(vksd::path_kind(t.p("none")) == vksd::PathKind::Missing);
  // Each opener refuses the FIFO at once (it would block forever in open()).
  CHECK(has(error_of([&] { vksd::SafetensorsFile f(t.p("fifo")); }), "is a FIFO (named pipe), not a regular file"));
  CHECK(has(error_of([&] { vksd::read_image(t.p("fifo")); }), "is a FIFO"));
  CHECK(has(error_of([&] { vksd::Tokenizer::load(t.p("fifo")); }), "is a FIFO"));
  CHECK(has(error_of([&] { vksd::read_regular_file(t.p("a"), "config"); }), "'" + t.p("a") + "' is a symlink loop"));
  CHECK(has(error_of([&] { vksd::read_regular_file(t.p("dir"), "config"); }), "is a directory, not a regular file"));
  CHECK(vksd::read_regular_file(t.p("file"), "config") == "x");
}

TEST_CASE("safetensors: a file truncated after opening is an Error naming it, not SIGBUS") {
  REQUIRE_SHARED();
  TmpDir t;
  const std::string path = t.p("m.safetensors");
  fs::copy_file(vksd::test::vectors_dir() + "/model.safetensors", path);
  vksd::SafetensorsFile f(path);
  const vksd::StTensor* last = &f.tensors().front();
  for (const auto& x : f.tensors())
    if (x.end > last->end) last = &x;
  // Cut the file in the middle of the data area while it is open (what a concurrent copy or a
  // full disk does); with mmap reading the tail raised SIGBUS and killed the process.
  REQUIRE(::truncate(path.c_str(), (off_t)(f.file_size() / 2)) == 0);
  const std::string e = error_of([&] { (void)f.to_f32(*last); });
  CHECK(has(e, path));
  CHECK(has(e, "file is truncated"));
  // An untouched tensor at the start still reads, bit-exactly as the original file has it.
  vksd::SafetensorsFile orig(vksd::test::vectors_dir() + "/model.safetensors");
  const auto& first = *std::min_element(f.tensors().begin(), f.tensors().end(), [](auto& a, auto& b) { return a.begin < b.begin; });
  CHECK(f.to_f32(first) == orig.to_f32(*orig.find(first.name)));
}

TEST_CASE("safetensors: header size cap, and a PNG is called a PNG") {
  TmpDir t;
  std::string b(8, '\0');
  const uint64_t n = vksd::SafetensorsFile::kMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) b[i] = (char)(n >> (8 * i));
  b += "{" + std::string(n - 2, ' ') + "}";
  std::ofstream(t.p("big.safetensors"), std::ios::binary) << b;
  CHECK(has(error_of([&] { vksd::SafetensorsFile f(t.p("big.safetensors")); }), "more than the 16 MiB"));
  vksd::write_png(t.p("x.png"), vksd::Image(8, 8, 3));
  const std::string e = error_of([&] { vksd::SafetensorsFile f(t.p("x.png")); });
  CHECK(has(e, "this is a PNG image"));
  CHECK(e.find('\x89') == std::string::npos);
}

TEST_CASE("tokenizer: a truncated .gz vocabulary is refused, the whole one loads") {
  REQUIRE_SHARED();
  TmpDir t;
  const std::string src = vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  std::ifstream in(src, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(in)), {});
  for (size_t cut : {b.size() / 2, b.size() - 9}) {  // mid-stream, and only the gzip trailer missing
    std::ofstream(t.p("cut.txt.gz"), std::ios::binary) << b.substr(0, cut);
    INFO("cut at " << cut << " of " << b.size());
    CHECK(has(error_of([&] { vksd::Tokenizer::load(t.p("cut.txt.gz")); }), "cut.txt.gz"));
  }
  CHECK(error_of([&] { vksd::Tokenizer::load(src); }).empty());
}

TEST_CASE("write_file_atomic: the file appears whole, no temp file is left, failures name the path") {
  TmpDir t;
  const std::string out = t.p("o.bin");
  const std::string data(100000, 'z');
  vksd::write_file_atomic(out, data.data(), data.size());
  std::ifstream in(out, std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(in)), {}) == data);
  CHECK(std::distance(fs::directory_iterator(t.dir), fs::directory_iterator()) == 1);  // no temp file beside it
  CHECK(has(error_of([&] { vksd::write_file_atomic(t.p("no/such/o.bin"), "x", 1); }), t.p("no/such/o.bin")));
}

TEST_CASE("non-finite detection names the stage and the first bad index") {
  std::vector<float> v = {1, 2, NAN, INFINITY, 3};
  CHECK(vksd::first_non_finite(std::span<const float>(v)) == 2);
  const std::string e = error_of([&] { vksd::require_finite(std::span<const float>(v), "the decoded image"); });
  CHECK(has(e, "non-finite values (NaN or infinity) in the decoded image: 2 of 5, first at index 2"));
  std::vector<double> ok = {0, -1e300, 1e300};
  CHECK(error_of([&] { vksd::require_finite(std::span<const double>(ok), "x"); }).empty());
}

TEST_CASE("stored alphas_cumprod: length, range and strict decrease are checked") {
  CHECK(has(error_of([] { vksd::validate_alphas_cumprod({0.5f}, 1000, "m"); }), "has 1 values but the schedule has 1000"));
  CHECK(has(error_of([] { vksd::validate_alphas_cumprod({0.9f, NAN, 0.1f}, 3, "m"); }), "alphas_cumprod[1]"));
  CHECK(has(error_of([] { vksd::validate_alphas_cumprod({0.9f, 0.9f, 0.1f}, 3, "m"); }), "not strictly decreasing at index 1"));
  CHECK(has(error_of([] { vksd::validate_alphas_cumprod({1.0f, 0.5f, 0.1f}, 3, "m"); }), "alphas_cumprod[0]"));
  CHECK(error_of([] { vksd::validate_alphas_cumprod({0.9f, 0.5f, 0.1f}, 3, "m"); }).empty());
  // The real SD 1.x schedule passes (as float32, the way checkpoints store it).
  vksd::NoiseSchedule s(vksd::ScheduleConfig{});
  std::vector<float> ac(s.alphas_cumprod().begin(), s.alphas_cumprod().end());
  CHECK(error_of([&] { vksd::validate_alphas_cumprod(ac, 1000, "m"); }).empty());
}

TEST_CASE("flag ranges: no wrap-around, no exponent forms, the limit in the message") {
  using vksd::cli::parse_int_in;
  CHECK(parse_int_in("--steps", "10000", 1, 10000) == 10000);
  CHECK(has(error_of([] { parse_int_in("--steps", "4294967297", 1, 10000); }), "--steps must be at most 10000 (got 4294967297)"));
  CHECK(has(error_of([] { parse_int_in("--steps", "99999999999999999999999", 1, 10000); }), "must be at most 10000"));
  CHECK(has(error_of([] { parse_int_in("--steps", "1e9", 1, 10000); }), "wants an integer"));
  CHECK(has(error_of([] { parse_int_in("--steps", "0", 1, 10000); }), "must be at least 1"));
}

TEST_CASE("prompt emphasis: absurd weights are refused with the text they apply to") {
  CHECK(has(error_of([] { vksd::parse_prompt_emphasis("a (cat:1000000) dog"); }), "'cat'"));
  CHECK(has(error_of([] { vksd::parse_prompt_emphasis(std::string(60, '(') + "x"); }), "beyond the maximum of 100"));
  CHECK(error_of([] { vksd::parse_prompt_emphasis("a (cat:100) ((dog))"); }).empty());
}

namespace {

// Starts `vksd generate ARGS...` with stdout+stderr to `log`; returns its pid.
pid_t spawn_vksd(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1), ::dup2(fd, 2);
    std::vector<char*> argv;
    const std::string bin = vksd::test::vksd_binary();
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Waits for the child; -1 on timeout (then it is killed).
int wait_status(pid_t pid, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return -1;
}

bool wait_for_text(const std::string& log, const std::string& text, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    if (slurp(log).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

TEST_CASE("signals: SIGINT/SIGTERM stop generate at the next step, no output and only whole step frames left, SIGKILL leaves no partial file") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  REQUIRE_SHARED();
  for (int sig : {SIGINT, SIGTERM, SIGKILL}) {
    TmpDir t;
    const std::string out = t.p("out.png"), log = t.p("log.txt");
    // 10000 steps (the maximum) take minutes even on the tiny model: the signal comes mid-run.
    const pid_t pid = spawn_vksd({"generate", "-m", vksd::test::vectors_dir() + "/model.safetensors", "--vocab",
                                  vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz", "-p", "a cat", "-W", "32",
                                  "-H", "32", "--steps", "10000", "--sampler", "euler", "-o", out, "--save-steps",
                                  t.p("steps")},
                                 log);
    REQUIRE(pid > 0);
    INFO("signal " << sig << "\nlog:\n" << slurp(log));
    const bool stepping = wait_for_text(log, "step 2/", 300);
    CHECK(stepping);
    ::kill(pid, sig);
    const int st = wait_status(pid, 60);
    REQUIRE(st != -1);  // it stopped (at the next step), not after 10000
    if (sig == SIGKILL) {
      CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    } else {
      CHECK(WIFEXITED(st));
      CHECK(WEXITSTATUS(st) == 128 + sig);
      CHECK(slurp(log).find(sig == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM") != std::string::npos);
    }
    CHECK(!fs::exists(out));
    // The step frames written so far are kept (issue 17: an interrupted run keeps its frames), each
    // one complete: every file in the folder is a PNG that decodes; no temporary file is left.
    if (sig != SIGKILL) CHECK(fs::exists(t.p("steps") + "/step_001_x0.png"));
    if (fs::exists(t.p("steps")))
      for (auto& e : fs::directory_iterator(t.p("steps"))) {
        INFO(e.path().string());
        CHECK(e.path().extension() == ".png");
        CHECK_NOTHROW(vksd::read_image(e.path().string()));
      }
    for (auto& e : fs::recursive_directory_iterator(t.dir))
      CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().string());
  }
}

TEST_CASE("signals: SIGKILL at several points of a --save-steps run leaves only whole PNGs, at the output and among the step frames") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  REQUIRE_SHARED();
  // Frames are written every step (--save-steps-every 1), so a kill lands during or between
  // frame writes; each frame must then be absent or whole, never cut (O_TMPFILE + rename).
  int frames_seen = 0;
  for (int at : {1, 2, 3, 5, 8}) {
    TmpDir t;
    const std::string out = t.p("out.png"), log = t.p("log.txt");
    const pid_t pid = spawn_vksd({"generate", "-m", vksd::test::vectors_dir() + "/model.safetensors", "--vocab",
                                  vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz", "-p", "a cat", "-W", "32",
                                  "-H", "32", "--steps", "10000", "--sampler", "euler", "-o", out, "--save-steps", t.p("steps"),
                                  "--save-steps-every", "1"},
                                 log);
    REQUIRE(pid > 0);
    INFO("kill at step " << at << "\nlog:\n" << slurp(log));
    CHECK(wait_for_text(log, "step " + std::to_string(at) + "/", 300));
    ::kill(pid, SIGKILL);
    const int st = wait_status(pid, 60);
    REQUIRE(st != -1);
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    CHECK(!fs::exists(out));
    if (fs::exists(t.p("steps")))
      for (auto& e : fs::directory_iterator(t.p("steps"))) {
        INFO(e.path().string());
        CHECK(e.path().extension() == ".png");
        CHECK_NOTHROW(vksd::read_image(e.path().string()));
        ++frames_seen;
      }
    for (auto& e : fs::recursive_directory_iterator(t.dir))
      CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().string());
  }
  CHECK(frames_seen > 0);  // the kills came while frames were being written, not before any
}

namespace {
uint64_t device_bytes_in_use() {
  uint64_t n = 0;
  for (auto& [k, v] : vksd::test::ctx().memory_in_use()) n += v;
  return n;
}
}  // namespace

TEST_CASE("memory budget: the estimate covers what a real run holds, and a small budget is refused before any upload") {
  const uint64_t before = device_bytes_in_use();
  auto pipe = vksd::test::demo_pipeline();
  for (auto [w, h, cfg] : {std::tuple{64, 64, 7.0}, std::tuple{128, 96, 1.0}}) {
    vksd::GenerateParams p;
    p.prompt = "a red circle";
    p.width = w, p.height = h, p.steps = 1, p.cfg_scale = cfg, p.seed = 1;
    const vksd::MemoryEstimate est = pipe->memory_estimate(p);
    pipe->generate(p);
    const uint64_t used = device_bytes_in_use() - before;  // weights + graph arenas, all resident
    INFO(w << "x" << h << " cfg " << cfg << ": estimate " << est.describe() << " = " << est.peak << " bytes, in use " << used);
    MESSAGE(w << "x" << h << " cfg " << cfg << ": estimate " << (est.peak >> 10) << " KiB, in use " << (used >> 10) << " KiB");
    CHECK(est.peak >= used);      // an upper estimate: a run that passes fits
    CHECK(est.peak <= 3 * used);  // and not so loose that it refuses runs that would fit
    pipe->release_all();
  }
  // A budget below the estimate: refused with the numbers and the advice, nothing allocated.
  vksd::PipelineOptions o;
  o.model_path = vksd::test::demo_model_path();
  o.memory_budget_mb = 1;
  vksd::SdPipeline small(vksd::test::ctx(), o);
  vksd::GenerateParams p;
  p.prompt = "x", p.width = p.height = 64, p.steps = 1;
  const uint64_t at_start = device_bytes_in_use();
  const std::string e = error_of([&] { small.generate(p); });
  // Not even one network fits: no setting helps, and the message says so instead of suggesting
  // tiling.
  CHECK(has(e, "of device memory with one network at a time (weights"));
  CHECK(has(e, "but the budget is 1 MiB: the largest network's weights alone exceed it, so no setting fits"));
  CHECK(has(e, "--memory-budget MB"));
  CHECK(device_bytes_in_use() == at_start);
  // The environment variable sets the budget when no option does.
  ::setenv("VKSD_MEMORY_BUDGET_MB", "7", 1);
  CHECK(vksd::memory_budget_bytes(vksd::test::ctx()) == (7ull << 20));
  CHECK(vksd::memory_budget_bytes(vksd::test::ctx(), 3) == (3ull << 20));
  ::unsetenv("VKSD_MEMORY_BUDGET_MB");
}

TEST_CASE("memory budget: a run that fits only one network at a time switches to lowvram, and says so") {
  vksd::GenerateParams p;
  p.prompt = "a red circle", p.width = p.height = 64, p.steps = 2, p.cfg_scale = 5, p.seed = 4;
  vksd::PipelineOptions lo;
  lo.model_path = vksd::test::demo_model_path();
  lo.lowvram = true;
  vksd::SdPipeline low_pipe(vksd::test::ctx(), lo);
  const vksd::MemoryEstimate low = low_pipe.memory_estimate(p);
  auto all_pipe = vksd::test::demo_pipeline();
  const vksd::MemoryEstimate all = all_pipe->memory_estimate(p);
  REQUIRE(all.peak > low.peak + (2 << 20));
  const uint64_t budget_mb = ((low.peak + all.peak) / 2) >> 20;  // between the two
  INFO("one at a time " << (low.peak >> 10) << " KiB, all resident " << (all.peak >> 10) << " KiB, budget " << budget_mb << " MiB");
  REQUIRE((budget_mb << 20) >= low.peak);
  REQUIRE((budget_mb << 20) < all.peak);

  struct Notes : vksd::Observer {
    std::vector<std::string> notes;
    void on_notice(const std::string& t) override { notes.push_back(t); }
  };
  // Without the automatic switch: refused before any upload, with --lowvram as the advice.
  vksd::PipelineOptions o = lo;
  o.lowvram = false, o.auto_lowvram = false, o.memory_budget_mb = budget_mb;
  {
    vksd::SdPipeline strict(vksd::test::ctx(), o);
    const std::string e = error_of([&] { strict.generate(p); });
    CHECK(has(e, "but the budget is " + std::to_string(budget_mb) + " MiB; try --lowvram"));
    CHECK_FALSE(strict.lowvram());
  }
  // With it (the default): one network at a time, within the budget, the same image as a run
  // asked for --lowvram.
  o.auto_lowvram = true;
  vksd::SdPipeline pipe(vksd::test::ctx(), o);
  CHECK_FALSE(pipe.lowvram());
  Notes notes;
  const vksd::GenerateResult r = pipe.generate(p, &notes);
  CHECK(pipe.lowvram());
  REQUIRE(notes.notes.size() == 1);
  CHECK(has(notes.notes[0], "switched to --lowvram"));
  CHECK(has(notes.notes[0], "but the budget is " + std::to_string(budget_mb) + " MiB"));
  for (auto& [stage, bytes] : r.stage_peaks) {
    INFO(stage << ": " << (bytes >> 10) << " KiB");
    CHECK(bytes <= (budget_mb << 20));
  }
  const vksd::GenerateResult ref = low_pipe.generate(p);
  CHECK(r.image.pixels == ref.image.pixels);
  // It stays on: the next run says nothing more.
  Notes again;
  pipe.generate(p, &again);
  CHECK(again.notes.empty());
}

TEST_CASE("image loader: a PNG chunk declaring more bytes than the file holds is refused before decoding") {
  // A 143-byte PNG: stb_image allocated up to 1 GB before failing (a fuzzer timeout under ASan).
  // The JPEG finds of tests/fuzz are in tests/test_jpeg_decode.cpp.
  const fs::path dir = fs::path(VKSD_SOURCE_DIR) / "tests/fuzz/corpus/image";
  CHECK(has(error_of([&] { vksd::read_image((dir / "slow-png-chunk-past-end.png").string()); }), "truncated PNG"));
}

TEST_CASE("image loader: only PNG, JPEG and BMP are read, and a BMP must hold its pixels") {
  // A 114-byte TGA declaring 12x22336 pixels: stb_image's TGA reader took the missing data as
  // zeros for > 12 s under the fuzzer (found by a long tests/fuzz run); TGA, PSD, PIC, HDR and
  // PNM (and GIF) are no longer compiled in.
  const fs::path dir = fs::path(VKSD_SOURCE_DIR) / "tests/fuzz/corpus/image";
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(has(error_of([&] { vksd::read_image((dir / "timeout-tga-16384.tga").string()); }),
            "not a PNG, JPEG or BMP image (the formats vksd reads), or corrupt"));
  // A 29-byte GIF declaring 16384x16384: stb_image allocated and cleared 2.3 GB first (47 s).
  const std::string gif = std::string("GIF89a\x00\x40\x00\x40\x00\x00\x00,\0\0\0\0\x00\x40\x00\x40\0\x02\x02\x4c\x01\0;", 29);
  CHECK(has(error_of([&] { vksd::decode_image(gif, "bomb.gif", 3); }), "not a PNG, JPEG or BMP image"));
  // stb_image reads an uncompressed BMP's rows the same way: a 16384x16384 header with no rows.
  std::string bmp = "BM";
  auto le = [&](uint32_t v, int n) {
    for (int k = 0; k < n; ++k) bmp.push_back((char)(v >> (8 * k)));
  };
  le(70, 4), le(0, 4), le(54, 4);                                    // file size, reserved, pixel offset
  le(40, 4), le(16384, 4), le(16384, 4), le(1, 2), le(24, 2), le(0, 4);  // BITMAPINFOHEADER, BI_RGB
  le(0, 4), le(2835, 4), le(2835, 4), le(0, 4), le(0, 4);
  bmp += std::string(16, '\0');
  CHECK(has(error_of([&] { vksd::decode_image(bmp, "bomb.bmp", 3); }),
            "truncated BMP (16384x16384 pixels need 805306422 bytes, the file has 70)"));
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 2.0);
  // A 29-byte BMP whose header is cut short (stb_image took the missing fields as zeros and ran
  // for > 13 s under the fuzzer).
  CHECK(has(error_of([&] { vksd::read_image((dir / "timeout-bmp-short-header.bmp").string()); }),
            "truncated BMP (the file ends inside its header)"));
  // A 28-byte BMP declaring a 3-byte info header: the size check itself read past the end
  // (ASan, found by the fuzzer in the check's first version).
  CHECK(has(error_of([&] { vksd::read_image((dir / "crash-bmp-header-3-bytes.bmp").string()); }),
            "truncated BMP (the file ends inside its header)"));
  // A whole BMP still reads.
  const vksd::Image ok = vksd::read_image((dir / "rgb2x2.bmp").string());
  CHECK(ok.width == 2);
  CHECK(ok.height == 2);
}
