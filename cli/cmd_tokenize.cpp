// `vksd tokenize`: how CLIP cuts a prompt into tokens, and what SD 1.x's text encoder receives.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/command.h"
#include "runtime/model/demo_model.h"
#include "runtime/model/checkpoint.h"
#include "runtime/error.h"
#include "runtime/text/prompt.h"
#include "runtime/text/text_clean.h"
#include "runtime/text/tokenizer.h"

namespace {

void usage() {
  std::printf(
      "usage: vksd tokenize [--vocab FILE] [-m|--model PATH] [--pad ID] [--emphasis] [--ids] TEXT...\n"
      "\n"
      "Shows how CLIP's BPE tokenizer splits TEXT (several arguments are joined with spaces):\n"
      "each token's id and text ('_' marks the end of a word), then the 77 ids the text encoder\n"
      "receives: [BOS 49406] + up to 75 tokens + [EOS 49407], padded with the model's pad id.\n"
      "\n"
      "  --vocab FILE   bpe_simple_vocab_16e6.txt.gz, or a tokenizer/ vocab.json (merges.txt beside)\n"
      "  -m, --model PATH  look for the vocabulary beside this checkpoint / in this diffusers folder\n"
      "                 (default search: the model config's tokenizer.vocab, beside the model,\n"
      "                 then $VKSD_VOCAB). Without --model and --vocab: the model generate would\n"
      "                 use ($VKSD_MODEL, else the demo model)\n"
      "  --pad ID       padding id (default: the model's: EOS for SD 1.x, 0 for SD 2.x's OpenCLIP)\n"
      "  --emphasis     parse (word), [word], (word:1.3) and BREAK as A1111 does and show the\n"
      "                 weighted segments and the 77-token chunks of a long prompt\n"
      "  --ids          print only the BPE ids (no BOS/EOS), space separated\n");
}

// A token's text for display: "</w>" (end of word) shown as '_'; a token holding only part of
// a multi-byte character (or control bytes) is shown as its bytes, e.g. <e6 9d>.
std::string display(const vksd::Tokenizer& tok, int32_t id) {
  std::string t = tok.token_bytes(id);
  const bool end_of_word =
      id != tok.eos_id() && id != tok.bos_id() && t.size() >= 4 && t.compare(t.size() - 4, 4, "</w>") == 0;
  if (end_of_word) t.resize(t.size() - 4);
  bool plain = true;
  try {
    for (char32_t c : vksd::utf8_decode(t)) plain = plain && c >= 0x20 && c != 0x7f;
  } catch (const vksd::Error&) {
    plain = false;
  }
  if (!plain) {
    std::string hex = "<";
    char buf[4];
    for (unsigned char c : t) {
      std::snprintf(buf, sizeof buf, "%02x", c);
      hex += (hex.size() > 1 ? " " : "") + std::string(buf);
    }
    t = hex + ">";
  }
  return end_of_word ? t + "_" : t;
}

// Left-justified in `width` code points (printf's %-Ns counts bytes).
std::string ljust(const std::string& s, size_t width) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n >= width ? s : s + std::string(width - n, ' ');
}

void print_ids(const int32_t* ids, size_t n) {
  for (size_t i = 0; i < n; ++i) std::printf("%s%d", i % 16 == 0 ? (i ? "\n    " : "    ") : " ", ids[i]);
  std::printf("\n");
}

int cmd_tokenize(int argc, char** argv) {
  std::string vocab, model, text;
  int pad = -1;
  bool emphasis = false, ids_only = false;
  for (int i = 1; i < argc; ++i) {
    auto arg = [&](const char* name) -> std::string {
      if (i + 1 >= argc) vksd::fail(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      usage();
      return 0;
    } else if (!std::strcmp(argv[i], "--vocab")) {
      vocab = arg("--vocab");
    } else if (!std::strcmp(argv[i], "--model") || !std::strcmp(argv[i], "-m")) {
      model = arg("--model");
    } else if (!std::strcmp(argv[i], "--pad")) {
      std::string v = arg("--pad");
      char* end = nullptr;
      long p = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || p < 0) vksd::fail("--pad wants a token id, got '" + v + "'");
      pad = (int)p;
    } else if (!std::strcmp(argv[i], "--emphasis")) {
      emphasis = true;
    } else if (!std::strcmp(argv[i], "--ids")) {
      ids_only = true;
    } else if (!std::strcmp(argv[i], "--")) {
      for (++i; i < argc; ++i) {
        if (!text.empty()) text += ' ';
        text += argv[i];
      }
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      usage();
      vksd::fail(std::string("unknown option ") + argv[i]);
    } else {
      if (!text.empty()) text += ' ';
      text += argv[i];
    }
  }

  // The model's config may name its vocabulary (tokenizer.vocab); reading it validates the
  // checkpoint's headers only, no weights.
  // No --model and no --vocab: the vocabulary of the model generate would use (the demo model).
  if (model.empty() && vocab.empty()) model = vksd::default_model_path();
  else if (!model.empty()) {
    if (std::string inner = vksd::model_in_folder(model); !inner.empty()) model = inner;
  }
  std::string config_vocab;
  if (!model.empty()) {
    const vksd::ModelConfig cfg = vksd::Checkpoint::open(model).config();
    if (vocab.empty()) config_vocab = cfg.tokenizer_vocab;
    // The model's own padding (SD 2.x's OpenCLIP pads with 0) unless --pad says otherwise.
    if (pad < 0) pad = cfg.clip.pad_token;
  }
  const std::string path = vksd::find_vocabulary(model, vocab, config_vocab);
  const vksd::Tokenizer tok = vksd::Tokenizer::load(path);
  if (pad >= (int)tok.vocab_size()) vksd::fail("--pad " + std::to_string(pad) + " is outside the vocabulary");

  if (ids_only) {
    auto ids = tok.encode(text);
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return 0;
  }

  std::printf("vocabulary: %s (%zu tokens, %zu merges)\n", path.c_str(), tok.vocab_size(), tok.merge_count());
  if (!emphasis) {
    std::printf("cleaned:    \"%s\"\n", vksd::clip_clean_text(text).c_str());
    auto words = tok.encode_words(text);
    size_t n = 0;
    for (auto& w : words) n += w.ids.size();
    std::printf("%zu tokens ('_' = end of word):\n", n);
    for (auto& w : words) {
      std::printf("  %s", ljust(w.text, 20).c_str());
      for (int32_t id : w.ids) std::printf(" %6d %s", id, ljust(display(tok, id), 12).c_str());
      std::printf("\n");
    }
    vksd::SdTokens sd = tok.encode_for_sd(text, 77, pad);
    std::printf("text encoder input (77 ids, padded with %d):\n", pad < 0 ? tok.eos_id() : pad);
    print_ids(sd.ids.data(), sd.ids.size());
    if (sd.truncated) std::printf("warning: %s\n", sd.truncation_warning().c_str());
    return 0;
  }

  std::printf("segments (A1111 emphasis):\n");
  for (const auto& s : vksd::parse_prompt_emphasis(text)) {
    if (s.is_break)
      std::printf("  BREAK\n");
    else
      std::printf("  %-8.4f \"%s\"\n", s.weight, s.text.c_str());
  }
  vksd::ChunkOptions opt;
  opt.pad_id = pad;
  vksd::WeightedPrompt wp = vksd::tokenize_weighted(tok, text, opt);
  std::printf("%d tokens in %d chunk%s of 77 (the text encoder runs once per chunk; outputs are concatenated):\n",
              wp.token_count, wp.chunk_count, wp.chunk_count == 1 ? "" : "s");
  for (int c = 0; c < wp.chunk_count; ++c) {
    std::printf("chunk %d:\n", c);
    const int32_t* ids = wp.chunk_ids(c);
    const float* w = wp.chunk_weights(c);
    const int32_t pad_id = pad < 0 ? tok.eos_id() : pad;
    const int len = vksd::WeightedPrompt::kChunkLength;
    int end = len;  // rows up to the padding
    while (end > 1 && ids[end - 1] == pad_id && w[end - 1] == 1.0f) --end;
    if (pad_id == tok.eos_id() && end < len) ++end;  // the first EOS is content, not padding
    for (int k = 0; k < end; ++k) std::printf("  %2d %6d %s x%.4f\n", k, ids[k], ljust(display(tok, ids[k]), 16).c_str(), w[k]);
    if (end < len) std::printf("  %2d..%d  %d (padding)\n", end, len - 1, pad_id);
  }
  return 0;
}

}  // namespace

VKSD_COMMAND(tokenize, "show how a prompt is cut into CLIP tokens (and emphasis weights)", cmd_tokenize);
