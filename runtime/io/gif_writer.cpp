#include "runtime/io/gif_writer.h"

#include <gif_lib.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>

#include "runtime/error.h"

namespace vksd {

namespace {

inline uint32_t rgb_key(const uint8_t* p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
inline int chan(uint32_t key, int c) { return (int)(key >> (16 - 8 * c)) & 0xff; }

// A palette (<= 256 colours) and every pixel's index into it.
struct Indexed {
  std::vector<uint32_t> palette;  // 0xRRGGBB
  std::vector<uint8_t> index;     // one per pixel
};

// The sorted distinct colours of some pixels.
std::vector<uint32_t> distinct_colours(std::vector<uint32_t> keys) {
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::vector<uint32_t> frame_keys(const Image& im) {
  const size_t n = (size_t)im.width * im.height;
  std::vector<uint32_t> k(n);
  for (size_t i = 0; i < n; ++i) k[i] = rgb_key(&im.pixels[i * 3]);
  return k;
}

// Pixels -> indices into `palette` (sorted, holding every colour of the pixels): exact.
std::vector<uint8_t> index_exact(const std::vector<uint32_t>& keys, const std::vector<uint32_t>& palette) {
  std::vector<uint8_t> idx(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    idx[i] = (uint8_t)(std::lower_bound(palette.begin(), palette.end(), keys[i]) - palette.begin());
  return idx;
}

// Median cut over the distinct colours (weighted by their pixel counts).
struct Colour {
  uint32_t key;
  uint32_t count;
};
struct Box {
  size_t begin, end;     // range of the colour array
  double score = 0;      // count-weighted squared deviation along `axis`
  int axis = 0;
};

void measure(Box& b, const std::vector<Colour>& cs) {
  double n = 0, sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
  for (size_t i = b.begin; i < b.end; ++i) {
    const double w = cs[i].count;
    n += w;
    for (int c = 0; c < 3; ++c) {
      const double v = chan(cs[i].key, c);
      sum[c] += w * v, sq[c] += w * v * v;
    }
  }
  b.score = -1, b.axis = 0;
  if (b.end - b.begin < 2) return;  // one colour: nothing to split
  for (int c = 0; c < 3; ++c) {
    const double sse = sq[c] - sum[c] * sum[c] / n;
    if (sse > b.score) b.score = sse, b.axis = c;
  }
}

Indexed quantize(const std::vector<uint32_t>& keys, int max_colours) {
  // Histogram: distinct colours with counts.
  std::vector<uint32_t> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  std::vector<Colour> cs;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    cs.push_back({sorted[i], (uint32_t)(j - i)});
    i = j;
  }
  std::vector<Box> boxes{{0, cs.size()}};
  measure(boxes[0], cs);
  while ((int)boxes.size() < max_colours) {
    size_t best = 0;
    for (size_t i = 1; i < boxes.size(); ++i)
      if (boxes[i].score > boxes[best].score) best = i;
    Box& b = boxes[best];
    if (b.score <= 0) break;  // every box is one colour (or flat)
    const int ax = b.axis;
    // Order along the axis (then the full key, so the result does not depend on std::sort).
    std::sort(cs.begin() + (ptrdiff_t)b.begin, cs.begin() + (ptrdiff_t)b.end, [ax](const Colour& a, const Colour& c) {
      const int va = chan(a.key, ax), vc = chan(c.key, ax);
      return va != vc ? va < vc : a.key < c.key;
    });
    // Split at the pixel-weighted median, keeping both halves non-empty.
    uint64_t total = 0;
    for (size_t i = b.begin; i < b.end; ++i) total += cs[i].count;
    uint64_t acc = 0;
    size_t split = b.begin + 1;
    for (size_t i = b.begin; i + 1 < b.end; ++i) {
      acc += cs[i].count;
      split = i + 1;
      if (2 * acc >= total) break;
    }
    Box hi{split, b.end};
    b.end = split;
    measure(b, cs);
    measure(hi, cs);
    boxes.push_back(hi);
  }
  Indexed r;
  for (const Box& b : boxes) {
    double n = 0, sum[3] = {0, 0, 0};
    for (size_t i = b.begin; i < b.end; ++i)
      for (int c = 0; c < 3; ++c) sum[c] += (double)cs[i].count * chan(cs[i].key, c);
    for (size_t i = b.begin; i < b.end; ++i) n += cs[i].count;
    uint32_t key = 0;
    for (int c = 0; c < 3; ++c) key |= (uint32_t)std::clamp((int)(sum[c] / n + 0.5), 0, 255) << (16 - 8 * c);
    r.palette.push_back(key);
  }
  // Every distinct colour -> its nearest palette entry; then every pixel through that table.
  std::sort(cs.begin(), cs.end(), [](const Colour& a, const Colour& c) { return a.key < c.key; });
  std::vector<uint32_t> distinct(cs.size());
  std::vector<uint8_t> nearest(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    distinct[i] = cs[i].key;
    int best = 0, best_d = std::numeric_limits<int>::max();
    for (size_t p = 0; p < r.palette.size(); ++p) {
      int d = 0;
      for (int c = 0; c < 3; ++c) {
        const int e = chan(cs[i].key, c) - chan(r.palette[p], c);
        d += e * e;
      }
      if (d < best_d) best_d = d, best = (int)p;
    }
    nearest[i] = (uint8_t)best;
  }
  r.index.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    r.index[i] = nearest[(size_t)(std::lower_bound(distinct.begin(), distinct.end(), keys[i]) - distinct.begin())];
  return r;
}

// A giflib colour map for a palette, padded with black to a power of two >= 2 entries.
struct MapPtr {
  ColorMapObject* m = nullptr;
  ~MapPtr() {
    if (m) GifFreeMapObject(m);
  }
};
void make_map(MapPtr& out, const std::vector<uint32_t>& palette) {
  int size = 2;
  while (size < (int)palette.size()) size *= 2;
  std::vector<GifColorType> colours((size_t)size, GifColorType{0, 0, 0});
  for (size_t i = 0; i < palette.size(); ++i)
    colours[i] = GifColorType{(GifByteType)chan(palette[i], 0), (GifByteType)chan(palette[i], 1),
                              (GifByteType)chan(palette[i], 2)};
  out.m = GifMakeMapObject(size, colours.data());
  if (!out.m) fail("GIF: cannot make a colour map of " + std::to_string(size) + " entries");
}

int write_to_vector(GifFileType* gif, const GifByteType* data, int len) {
  auto* v = static_cast<std::vector<uint8_t>*>(gif->UserData);
  v->insert(v->end(), data, data + len);
  return len;
}

}  // namespace

std::vector<uint8_t> encode_gif(const std::vector<Image>& frames, int delay_centiseconds, int loop_count) {
  if (frames.empty()) fail("GIF: no frames to write");
  const int w = frames[0].width, h = frames[0].height;
  if (w < 1 || h < 1 || w > 65535 || h > 65535)
    fail("GIF: frame size " + std::to_string(w) + "x" + std::to_string(h) + " is outside 1..65535");
  for (size_t i = 0; i < frames.size(); ++i) {
    const Image& f = frames[i];
    if (f.channels != 3)
      fail("GIF: frame " + std::to_string(i) + " has " + std::to_string(f.channels) + " channels; RGB (3) expected");
    if (f.width != w || f.height != h)
      fail("GIF: frame " + std::to_string(i) + " is " + std::to_string(f.width) + "x" + std::to_string(f.height) +
           " but frame 0 is " + std::to_string(w) + "x" + std::to_string(h) + "; all frames must be the same size");
    if (f.pixels.size() != (size_t)w * h * 3)
      fail("GIF: frame " + std::to_string(i) + " holds " + std::to_string(f.pixels.size()) + " bytes, not width x height x 3");
  }
  if (delay_centiseconds < 0 || delay_centiseconds > 65535)
    fail("GIF: frame delay " + std::to_string(delay_centiseconds) + " cs is outside 0..65535");
  if (loop_count > 65535) fail("GIF: loop count " + std::to_string(loop_count) + " is above 65535");

  // Palettes: one exact global palette when every frame together has <= 256 colours.
  std::vector<std::vector<uint32_t>> keys, own;
  keys.reserve(frames.size());
  own.reserve(frames.size());
  std::vector<uint32_t> all;
  for (const Image& f : frames) {
    keys.push_back(frame_keys(f));
    own.push_back(distinct_colours(keys.back()));
    if (all.size() <= 256) {
      std::vector<uint32_t> u;
      std::set_union(all.begin(), all.end(), own.back().begin(), own.back().end(), std::back_inserter(u));
      all = std::move(u);
    }
  }
  const bool global = all.size() <= 256;
  std::vector<Indexed> indexed(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    if (global) {
      indexed[i].index = index_exact(keys[i], all);
    } else if (own[i].size() <= 256) {
      indexed[i].index = index_exact(keys[i], own[i]);
      indexed[i].palette = std::move(own[i]);
    } else {
      indexed[i] = quantize(keys[i], 256);
    }
  }

  std::vector<uint8_t> bytes;
  int err = 0;
  struct GifCloser {  // closes (and frees) the encoder when an error leaves early
    GifFileType* gif;
    ~GifCloser() {
      if (gif) EGifCloseFile(gif, nullptr);
    }
  } enc{EGifOpen(&bytes, write_to_vector, &err)};
  GifFileType* gif = enc.gif;
  if (!gif) fail(std::string("GIF: cannot start encoding: ") + (GifErrorString(err) ? GifErrorString(err) : "?"));
  auto check = [&](int rc, const char* what) {
    if (rc == GIF_OK) return;
    const char* s = GifErrorString(gif->Error);
    fail(std::string("GIF: ") + what + " failed: " + (s ? s : "unknown giflib error"));
  };
  EGifSetGifVersion(gif, true);  // GIF89a: the extensions below need it
  {
    MapPtr gmap;
    if (global) make_map(gmap, all);
    check(EGifPutScreenDesc(gif, w, h, 8, 0, gmap.m), "writing the screen descriptor");
  }
  if (loop_count >= 0) {
    const uint8_t sub[3] = {1, (uint8_t)(loop_count & 0xff), (uint8_t)(loop_count >> 8)};
    check(EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE), "writing the loop extension");
    check(EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0"), "writing the loop extension");
    check(EGifPutExtensionBlock(gif, 3, sub), "writing the loop extension");
    check(EGifPutExtensionTrailer(gif), "writing the loop extension");
  }
  std::vector<GifPixelType> row((size_t)w);
  for (size_t i = 0; i < frames.size(); ++i) {
    GraphicsControlBlock gcb{};
    gcb.DisposalMode = DISPOSE_DO_NOT;  // every frame covers the whole canvas
    gcb.UserInputFlag = false;
    gcb.DelayTime = delay_centiseconds;
    gcb.TransparentColor = NO_TRANSPARENT_COLOR;
    GifByteType ext[4];
    const size_t n = EGifGCBToExtension(&gcb, ext);
    check(EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, (int)n, ext), "writing a graphics control extension");
    {
      MapPtr lmap;
      if (!global) make_map(lmap, indexed[i].palette);
      check(EGifPutImageDesc(gif, 0, 0, w, h, false, lmap.m), "writing an image descriptor");
    }
    const uint8_t* idx = indexed[i].index.data();
    for (int y = 0; y < h; ++y) {
      std::memcpy(row.data(), idx + (size_t)y * w, (size_t)w);
      check(EGifPutLine(gif, row.data(), w), "writing pixels");
    }
  }
  enc.gif = nullptr;
  if (EGifCloseFile(gif, &err) != GIF_OK) {
    const char* s = GifErrorString(err);
    fail(std::string("GIF: finishing the file failed: ") + (s ? s : "unknown giflib error"));
  }
  return bytes;
}

void write_gif(const std::string& path, const std::vector<Image>& frames, int delay_centiseconds, int loop_count) {
  const auto bytes = encode_gif(frames, delay_centiseconds, loop_count);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace vksd
