// README "Bad input" table, one row per case: each runs the real `vksd generate` on a hostile
// input and checks what the table promises — a clean error exit (1 or 2: not a signal, not a
// hang, not 0), a message naming the problem, and no output file or temp file left behind.
// Keep this table and the README's in the same order.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "runtime/io/image_io.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_writer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using vksd::test::shell_quote;

namespace {

struct Dir {
  fs::path dir = fs::temp_directory_path() / ("vksd_badin_" + std::to_string(::getpid()));
  Dir() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Dir() {
    ::chmod(dir.c_str(), 0755);
    fs::remove_all(dir);
  }
  std::string p(const std::string& name) const { return (dir / name).string(); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), (std::streamsize)bytes.size());
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A safetensors file with this JSON header and `data` bytes after it.
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string b(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = (char)(n >> (8 * i));
  return b + header + data;
}

// The tiny reference model rewritten with `edit` applied to each tensor (shape and values, as
// F32), plus its model.json beside it under the new stem.
using Edit = std::function<void(const std::string& name, vksd::Shape& shape, std::vector<float>& values)>;
std::string edited_model(const Dir& d, const std::string& stem, const Edit& edit) {
  const std::string src = vksd::test::vectors_dir() + "/model.safetensors";
  vksd::SafetensorsFile f(src);
  std::vector<vksd::StOutTensor> outs;
  std::vector<std::vector<float>> vals;
  for (const auto& t : f.tensors()) {
    vksd::Shape shape = t.shape;
    std::vector<float> v = f.to_f32(t);
    edit(t.name, shape, v);
    outs.push_back({t.name, vksd::DType::F32, shape});
    vals.push_back(std::move(v));
  }
  const std::string path = d.p(stem + ".safetensors");
  vksd::write_safetensors(path, outs, [&](size_t i, std::vector<float>& out) { out = vals[i]; });
  fs::copy_file(vksd::test::vectors_dir() + "/model.json", d.p(stem + ".json"), fs::copy_options::overwrite_existing);
  return path;
}

// A PNG whose IHDR claims w x h pixels (the pixel data is a real but tiny IDAT: decoders must
// refuse on the header).
std::string png_claiming(uint32_t w, uint32_t h) {
  auto bytes = vksd::encode_png(vksd::Image(8, 8, 3));
  for (int i = 0; i < 4; ++i) {
    bytes[16 + i] = (uint8_t)(w >> (24 - 8 * i));
    bytes[20 + i] = (uint8_t)(h >> (24 - 8 * i));
  }
  return std::string(bytes.begin(), bytes.end());
}

struct Row {
  const char* what;                            // the README row
  std::function<std::string(const Dir&)> args;  // extra arguments after the valid base ones
  const char* expect;                          // substring of the message
  const char* env = "";
};

std::vector<Row> rows() {
  const std::string model = vksd::test::vectors_dir() + "/model.safetensors";
  auto m = [](const std::string& path) { return "-m " + shell_quote(path); };
  return {
      // --- checkpoints
      {"truncated checkpoint", [=](const Dir& d) {
         std::string b = read_bytes(model);
         write_bytes(d.p("trunc.safetensors"), b.substr(0, b.size() / 2));
         return m(d.p("trunc.safetensors"));
       }, "lies outside the data area"},
      {"empty checkpoint", [=](const Dir& d) { write_bytes(d.p("empty.safetensors"), ""); return m(d.p("empty.safetensors")); },
       "file is empty"},
      {"oversized header (17 MiB)", [=](const Dir& d) {
         write_bytes(d.p("big.safetensors"), safetensors_bytes("{" + std::string(17u << 20, ' ') + "}"));
         return m(d.p("big.safetensors"));
       }, "more than the 16 MiB"},
      {"header not JSON", [=](const Dir& d) { write_bytes(d.p("nj.safetensors"), safetensors_bytes("{nope")); return m(d.p("nj.safetensors")); },
       "header is not valid JSON"},
      {"deeply nested JSON header", [=](const Dir& d) {
         write_bytes(d.p("deep.safetensors"), safetensors_bytes("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}"));
         return m(d.p("deep.safetensors"));
       }, "nesting too deep"},
      {"negative shape", [=](const Dir& d) {
         write_bytes(d.p("neg.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"));
         return m(d.p("neg.safetensors"));
       }, "shape entries must be non-negative integers"},
      {"fractional shape", [=](const Dir& d) {
         write_bytes(d.p("frac.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "abcd"));
         return m(d.p("frac.safetensors"));
       }, "shape entries must be non-negative integers"},
      {"overflowing shape", [=](const Dir& d) {
         write_bytes(d.p("ovf.safetensors"),
                     safetensors_bytes(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", "abcd"));
         return m(d.p("ovf.safetensors"));
       }, "more than 2^64"},
      {"unknown dtype", [=](const Dir& d) {
         write_bytes(d.p("dt.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", "abcd"));
         return m(d.p("dt.safetensors"));
       }, "unknown or unsupported dtype"},
      {"duplicate tensor", [=](const Dir& d) {
         write_bytes(d.p("dup.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                                               R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcdefgh"));
         return m(d.p("dup.safetensors"));
       }, "duplicate key"},
      {"overlapping tensors", [=](const Dir& d) {
         write_bytes(d.p("ovl.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                               R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "abcdefghijkl"));
         return m(d.p("ovl.safetensors"));
       }, "overlaps tensor"},
      {"missing tensors (not an SD checkpoint)", [=](const Dir& d) {
         write_bytes(d.p("few.safetensors"), safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
         return m(d.p("few.safetensors"));
       }, "no UNet tensors"},
      {"misshaped tensor", [](const Dir& d) {
         return "-m " + shell_quote(edited_model(d, "misshaped", [](const std::string& n, vksd::Shape& s, std::vector<float>& v) {
                  if (n == "model.diffusion_model.out.2.bias") s = {3}, v.resize(3);
                }));
       }, "out.2.bias"},
      {"zero-size UNet conv_in", [](const Dir& d) {
         return "-m " + shell_quote(edited_model(d, "zero", [](const std::string& n, vksd::Shape& s, std::vector<float>& v) {
                  if (n == "model.diffusion_model.input_blocks.0.0.weight") s[0] = 0, v.clear();
                }));
       }, "needs dimensions between 1 and"},
      {"stored alphas_cumprod of length 1", [](const Dir& d) {
         return "-m " + shell_quote(edited_model(d, "ac1", [](const std::string& n, vksd::Shape& s, std::vector<float>& v) {
                  if (n == "alphas_cumprod") s = {1}, v.resize(1);
                })) + " --sampler euler";
       }, "stored alphas_cumprod has 1 values"},
      {"NaN weights", [](const Dir& d) {
         return "-m " + shell_quote(edited_model(d, "nan", [](const std::string& n, vksd::Shape&, std::vector<float>& v) {
                  if (n == "model.diffusion_model.out.2.bias") v.assign(v.size(), NAN);
                })) + " --steps 2";
       }, "non-finite values (NaN or infinity) in the latent after sampling step 1"},
      {"a PNG given as the checkpoint", [](const Dir& d) {
         vksd::write_png(d.p("pic.png"), vksd::Image(8, 8, 3));
         fs::rename(d.p("pic.png"), d.p("pic.safetensors"));
         return "-m " + shell_quote(d.p("pic.safetensors"));
       }, "this is a PNG image, not a safetensors checkpoint"},
      // --- paths that are not regular files
      {"model is an empty directory", [](const Dir& d) { fs::create_directories(d.p("emptydir")); return "-m " + shell_quote(d.p("emptydir")); },
       "a diffusers folder needs unet/, vae/ and text_encoder/"},
      {"model is a FIFO", [](const Dir& d) { ::mkfifo(d.p("fifo.safetensors").c_str(), 0600); return "-m " + shell_quote(d.p("fifo.safetensors")); },
       "is a FIFO (named pipe), not a file or a folder"},
      {"model is a device", [](const Dir&) { return std::string("-m /dev/zero"); }, "is a character device"},
      {"model is a symlink loop", [](const Dir& d) {
         fs::create_symlink(d.p("loop_b"), d.p("loop_a"));
         fs::create_symlink(d.p("loop_a"), d.p("loop_b"));
         return "-m " + shell_quote(d.p("loop_a"));
       }, "is a symlink loop"},
      {"--init-img is a FIFO", [](const Dir& d) { ::mkfifo(d.p("fifo.png").c_str(), 0600); return "--init-img " + shell_quote(d.p("fifo.png")); },
       "--init-img '"},
      {"--config is a FIFO", [](const Dir& d) { ::mkfifo(d.p("fifo.json").c_str(), 0600); return "--config " + shell_quote(d.p("fifo.json")); },
       "--config file '"},
      // --- vocabulary
      {"missing vocabulary", [](const Dir& d) { return "--vocab " + shell_quote(d.p("none.txt.gz")); }, "--vocab file not found"},
      {"truncated .gz vocabulary", [](const Dir& d) {
         std::string b = read_bytes(vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz");
         write_bytes(d.p("cut.txt.gz"), b.substr(0, b.size() / 2));
         return "--vocab " + shell_quote(d.p("cut.txt.gz"));
       }, "truncated"},
      {"--vocab is a FIFO", [](const Dir& d) { ::mkfifo(d.p("fifo.gz").c_str(), 0600); return "--vocab " + shell_quote(d.p("fifo.gz")); },
       "is a FIFO"},
      // --- prompts
      {"100 KB prompt", [](const Dir&) { return "-p " + shell_quote(std::string(100000, 'a') + " cat"); }, "the maximum is 32768"},
      {"invalid UTF-8 prompt", [](const Dir&) { return std::string("-p \"$(printf 'a \\377\\376 cat')\""); }, "UTF-8"},
      {"emphasis weight 1e6", [](const Dir&) { return std::string("-p '(cat:1000000)'"); }, "beyond the maximum of 100"},
      // --- images
      {"0x0 image", [](const Dir& d) { write_bytes(d.p("zero.png"), png_claiming(0, 0)); return "--init-img " + shell_quote(d.p("zero.png")); },
       "it is 0x0 pixels"},
      {"1x1 image", [](const Dir& d) { vksd::write_png(d.p("one.png"), vksd::Image(1, 1, 3)); return "--init-img " + shell_quote(d.p("one.png")); },
       "--init-img is 1x1"},
      {"50000x50000 image", [](const Dir& d) {
         write_bytes(d.p("huge.png"), png_claiming(50000, 50000));
         return "--init-img " + shell_quote(d.p("huge.png"));
       }, "at most 16384 pixels per side"},
      {"truncated PNG", [](const Dir& d) {
         vksd::Image im(32, 32, 3);
         for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = (uint8_t)(i * 7919 % 251);
         auto b = vksd::encode_png(im);
         write_bytes(d.p("cut.png"), std::string(b.begin(), b.begin() + (long)b.size() / 2));
         return "--init-img " + shell_quote(d.p("cut.png"));
       }, "truncated PNG"},
      {"truncated JPEG", [](const Dir& d) {
         // A baseline JPEG header cut right after its start-of-scan: no end-of-image marker.
         const unsigned char head[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
         write_bytes(d.p("cut.jpg"), std::string((const char*)head, sizeof head));
         return "--init-img " + shell_quote(d.p("cut.jpg"));
       }, "truncated JPEG"},
      {"mask of 4x4 pixels", [](const Dir& d) {
         vksd::write_png(d.p("init.png"), vksd::Image(32, 32, 3));
         vksd::write_png(d.p("mask.png"), vksd::Image(4, 4, 1));
         return "--init-img " + shell_quote(d.p("init.png")) + " --mask " + shell_quote(d.p("mask.png"));
       }, "--mask is 4x4: too small"},
      // --- sizes and steps
      {"width not a multiple of 8", [](const Dir&) { return std::string("-W 100"); }, "multiple of 8"},
      {"width not a multiple of the model's step", [](const Dir&) {
         // The demo model's UNet halves the latent twice: sizes go in steps of 8 x 4 = 32.
         const std::string demo = vksd::test::demo_model_path();
         return "-m " + shell_quote(demo) + " --vocab " + shell_quote((fs::path(demo).parent_path() / "bpe_vocab.txt.gz").string()) +
                " -W 48 -H 32";
       }, "multiples of 32 for this model (got 48x32)"},
      {"width that wraps (4294967360)", [](const Dir&) { return std::string("-W 4294967360"); }, "-W must be at most 16384"},
      {"width 100000", [](const Dir&) { return std::string("-W 100000"); }, "-W must be at most 16384"},
      {"steps 0", [](const Dir&) { return std::string("--steps 0"); }, "--steps must be at least 1"},
      {"steps negative", [](const Dir&) { return std::string("--steps -5"); }, "--steps must be at least 1"},
      {"steps that wrap (4294967297)", [](const Dir&) { return std::string("--steps 4294967297"); }, "--steps must be at most 10000"},
      {"steps 1e9", [](const Dir&) { return std::string("--steps 1e9"); }, "--steps wants an integer"},
      {"batch count that wraps", [](const Dir&) { return std::string("--batch-count 4294967297"); }, "--batch-count must be at most 100000"},
      // --- guidance and noise
      {"NaN guidance", [](const Dir&) { return std::string("--cfg-scale nan"); }, "--cfg-scale wants a number"},
      {"infinite guidance", [](const Dir&) { return std::string("--cfg-scale inf"); }, "--cfg-scale wants a number"},
      {"guidance 1e6", [](const Dir&) { return std::string("--cfg-scale 1e6"); }, "beyond the maximum of 100"},
      {"DDIM eta 1e308", [](const Dir&) { return std::string("--sampler ddim --eta 1e308"); }, "beyond the maximum of 10"},
      // --- outputs
      {"output in a missing folder", [](const Dir& d) { return "-o " + shell_quote(d.p("no/such/out.png")); }, "output folder does not exist"},
      {"output in an unwritable folder", [](const Dir&) { return std::string("-o /proc/vksd_out.png"); }, "cannot create files in folder '/proc'"},
      {"output is an existing directory", [](const Dir& d) { fs::create_directories(d.p("isdir.png")); return "-o " + shell_quote(d.p("isdir.png")); },
       "is a directory, not a file that can be replaced"},
      {"output equal to the init image", [](const Dir& d) {
         vksd::write_png(d.p("same.png"), vksd::Image(32, 32, 3));
         return "--init-img " + shell_quote(d.p("same.png")) + " -o " + shell_quote(d.p("same.png"));
       }, "is the --init-img file"},
      {"--save-steps names a file", [](const Dir& d) { write_bytes(d.p("afile"), "x"); return "--save-steps " + shell_quote(d.p("afile")); },
       "--save-steps '"},
      {"--device \"\"", [](const Dir&) { return std::string("--device ''"); }, "--device needs a device index or a name"},
      {"memory budget too small", [](const Dir&) { return std::string("--memory-budget 1"); }, "needs about"},
  };
}

bool tmp_files_in(const fs::path& dir) {
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("bad input table: every row a clean refusal naming the problem, nothing written") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  REQUIRE_SHARED();
  const auto table = rows();
  CHECK(table.size() >= 30);
  const std::string model = vksd::test::vectors_dir() + "/model.safetensors";
  const std::string vocab = vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  for (const Row& row : table) {
    Dir d;
    const std::string out = d.p("out.png");
    // Valid defaults first; the row's flags come last and override them.
    const std::string args = "generate -m " + shell_quote(model) + " --vocab " + shell_quote(vocab) + " -o " + shell_quote(out) +
                             " -p 'a cat' -W 32 -H 32 --steps 2 " + row.args(d);
    // `timeout` turns a hang (a FIFO opened for reading) into exit 124, which fails the row.
    auto r = vksd::test::run_vksd(args, std::string("timeout 120 ") + row.env);
    INFO("row: " << std::string(row.what) << "\nargs: " << args << "\noutput: " << r.out);
    CHECK((r.code == 1 || r.code == 2));
    CHECK(r.out.find(row.expect) != std::string::npos);
    CHECK(r.out.find("error") != std::string::npos);
    CHECK(!fs::exists(out));
    CHECK(!tmp_files_in(d.dir));
    if (std::getenv("VKSD_PRINT_TABLE"))  // to check the README's table against the real messages
      MESSAGE(std::string(row.what) << " | " << r.out.substr(r.out.rfind("error: ") == std::string::npos ? 0 : r.out.rfind("error: ") + 7));
  }
}
