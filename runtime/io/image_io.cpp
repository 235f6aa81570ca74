#include "runtime/io/image_io.h"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/io/file_check.h"
#include "runtime/io/jpeg_decode.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_JPEG  // JPEGs go to libjpeg-turbo (runtime/io/jpeg_decode.h says why)
// Only PNG and BMP are read through stb_image. Its TGA, PSD, PIC, HDR and PNM readers take bytes
// past the end of the file as zeros, so a few bytes declaring 16384x16384 pixels kept the decoder
// busy for > 10 s (a TGA found by tests/fuzz, corpus/image/timeout-tga-16384.tga); its GIF reader
// allocates and clears 9 bytes per declared pixel before reading any data (a 29-byte GIF of
// 16384x16384: 2.3 GB and 47 s). Nobody starts an image from those formats.
#define STBI_NO_GIF
#define STBI_NO_TGA
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_HDR
#define STBI_NO_PNM
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace vksd {

// Why stb_image refused `b`, said in the user's terms where the file is plainly cut short (stb
// reports a truncated PNG as e.g. an unsupported bit depth).
static std::string truncation_reason(std::string_view b) {
  static const char png_sig[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  if (b.size() >= 2 && (unsigned char)b[0] == 0xff && (unsigned char)b[1] == 0xd8) {
    // The end-of-image marker after the (first) start of scan; data after it (phone trailers)
    // is allowed.
    const size_t sos = b.find("\xff\xda");
    if (b.find("\xff\xd9", sos == std::string::npos ? 2 : sos) == std::string::npos)
      return "truncated JPEG (no end-of-image marker)";
    return "";
  }
  if (b.size() < 8 || b.compare(0, 8, std::string_view(png_sig, 8)) != 0) return "";
  size_t pos = 8;
  while (pos + 12 <= b.size()) {
    const uint32_t n = (uint32_t)(uint8_t)b[pos] << 24 | (uint32_t)(uint8_t)b[pos + 1] << 16 |
                       (uint32_t)(uint8_t)b[pos + 2] << 8 | (uint8_t)b[pos + 3];
    if (b.compare(pos + 4, 4, "IEND") == 0) return "";
    if ((uint64_t)pos + 12 + n > b.size()) break;
    pos += 12 + (size_t)n;
  }
  return "truncated PNG (the file ends before its IEND chunk)";
}

// stb_image reads an uncompressed BMP's rows without checking that the file holds them (missing
// bytes read as zeros: a bomb like the TGA above), so the pixel array's size is checked first.
static std::string bmp_truncation(std::string_view b) {
  if (b.size() < 2 || b[0] != 'B' || b[1] != 'M') return "";
  auto le = [&](size_t i, int n) {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = v << 8 | (uint8_t)b[i + (size_t)k];
    return v;
  };
  // stb_image also takes a cut-short header's missing fields as zeros (a 29-byte file decoded
  // for > 13 s under the fuzzer: corpus/image/timeout-bmp-short-header.bmp).
  // The fields read below end at byte 26 (OS/2 header of 12 bytes) or 30 (any other).
  if (b.size() < 18 || b.size() < 14 + std::max<uint64_t>(std::min<uint64_t>(le(14, 4), 40), le(14, 4) == 12 ? 12 : 16))
    return "truncated BMP (the file ends inside its header)";
  const uint64_t offset = le(10, 4), header = le(14, 4);
  int64_t w = 0, h = 0;
  uint64_t bpp = 0;
  if (header == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    w = (int64_t)le(18, 2), h = (int64_t)le(20, 2), bpp = le(24, 2);
  } else {
    w = (int32_t)le(18, 4), h = (int32_t)le(22, 4), bpp = le(28, 2);
  }
  if (h < 0) h = -h;  // top-down rows
  if (w <= 0 || h <= 0 || bpp == 0 || bpp > 32) return "";  // stb_image names these
  const uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4, need = offset + row * (uint64_t)h;
  if (need > b.size())
    return "truncated BMP (" + std::to_string(w) + "x" + std::to_string(h) + " pixels need " + std::to_string(need) +
           " bytes, the file has " + std::to_string(b.size()) + ")";
  return "";
}

Image decode_image(std::string_view bytes, const std::string& name, int channels) {
  if (channels != 1 && channels != 3 && channels != 4) fail("read_image: channels must be 1, 3 or 4");
  if (bytes.empty()) fail("cannot read image '" + name + "': the file is empty");
  if (bytes.size() > (size_t)INT32_MAX) fail("cannot read image '" + name + "': the file is larger than 2 GB");
  const auto* data_in = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = (int)bytes.size();
  int w = 0, h = 0, n = 0;
  auto why = [&](const char* stb) {
    std::string t = truncation_reason(bytes);
    std::string r = stb ? stb : "unknown format";
    if (r.find("not of any known type") != std::string::npos) r = "not a PNG, JPEG or BMP image (the formats vksd reads), or corrupt";
    return "cannot read image '" + name + "': " + (t.empty() ? r : t);
  };
  // Before any decoder: stb_image would allocate what a cut-short PNG chunk declares (up to 1 GB
  // for a file of 143 bytes, found by tests/fuzz) before noticing the data is not there.
  if (std::string t = truncation_reason(bytes); !t.empty()) fail("cannot read image '" + name + "': " + t);
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name, channels);
  if (std::string t = bmp_truncation(bytes); !t.empty()) fail("cannot read image '" + name + "': " + t);
  const std::string limit = "; vksd reads images of at most " + std::to_string(kMaxImageSide) + " pixels per side";
  // A PNG's size is in its IHDR: read it here, since stb_image refuses big ones as just "too large".
  if (bytes.size() >= 24 && bytes.compare(1, 3, "PNG") == 0 && bytes.compare(12, 4, "IHDR") == 0) {
    auto be32 = [&](size_t i) {
      return (uint32_t)(uint8_t)bytes[i] << 24 | (uint32_t)(uint8_t)bytes[i + 1] << 16 | (uint32_t)(uint8_t)bytes[i + 2] << 8 |
             (uint8_t)bytes[i + 3];
    };
    const uint32_t pw = be32(16), ph = be32(20);
    if (pw == 0 || ph == 0) fail("cannot read image '" + name + "': it is " + std::to_string(pw) + "x" + std::to_string(ph) + " pixels");
    if (pw > (uint32_t)kMaxImageSide || ph > (uint32_t)kMaxImageSide)
      fail("image '" + name + "' is " + std::to_string(pw) + "x" + std::to_string(ph) + " pixels" + limit);
  }
  if (!stbi_info_from_memory(data_in, len, &w, &h, &n)) {
    const char* r = stbi_failure_reason();
    if (r && std::string(r).find("too large") != std::string::npos) fail("image '" + name + "' is too large to decode" + limit);
    fail(why(r));
  }
  if (w <= 0 || h <= 0) fail("cannot read image '" + name + "': it is " + std::to_string(w) + "x" + std::to_string(h) + " pixels");
  if (w > kMaxImageSide || h > kMaxImageSide)
    fail("image '" + name + "' is " + std::to_string(w) + "x" + std::to_string(h) + " pixels" + limit);
  unsigned char* data = stbi_load_from_memory(data_in, len, &w, &h, &n, channels);
  if (!data) fail(why(stbi_failure_reason()));
  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.pixels.assign(data, data + (size_t)w * h * channels);
  stbi_image_free(data);
  return img;
}

Image read_image(const std::string& path, int channels) {
  return decode_image(read_regular_file(path, "image"), path, channels);
}

Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& what) {
  return decode_image(std::string_view(reinterpret_cast<const char*>(data), size), what, channels);
}

// ---- PNG through libpng ------------------------------------------------------------------------

namespace {
// libpng reports errors by longjmp (it is C): the message is kept here, and every function that
// calls setjmp has only trivially destructible locals, so nothing is skipped by the jump.
struct PngError {
  char msg[200] = "";
};
void png_on_error(png_structp p, png_const_charp msg) {
  auto* e = static_cast<PngError*>(png_get_error_ptr(p));
  std::snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(p, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

// The libpng calls of encode_png: true on success.
bool png_write_all(png_structp png, png_infop info, const Image& img, png_text* text, int n_text, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  const int color_type = img.channels == 1 ? PNG_COLOR_TYPE_GRAY : img.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
  png_set_IHDR(png, info, (png_uint_32)img.width, (png_uint_32)img.height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  if (n_text) png_set_text(png, info, text, n_text);
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

// The libpng calls of read_png_text (the whole file, so that text after the image data is seen).
bool png_read_all(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}
}  // namespace

std::vector<uint8_t> encode_png(const Image& img, const TextChunks& text) {
  if (img.width <= 0 || img.height <= 0) fail("encode_png: empty image");
  if (img.channels != 1 && img.channels != 3 && img.channels != 4) fail("encode_png: channels must be 1, 3 or 4");
  if (img.pixels.size() != (size_t)img.width * img.height * img.channels) fail("encode_png: pixel buffer size mismatch");
  for (const auto& [key, value] : text) {
    if (key.empty() || key.size() > 79 || key.find('\0') != std::string::npos)
      fail("encode_png: text keyword must be 1-79 characters: '" + key + "'");
    if (value.find('\0') != std::string::npos) fail("encode_png: text contains NUL");
  }
  std::vector<uint8_t> out;
  PngError err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    fail("encode_png: out of memory");
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        auto* o = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        o->insert(o->end(), data, data + n);
      },
      nullptr);
  // Text as uncompressed iTXt (UTF-8, no language tag), as A1111 (PIL's add_itxt) writes its
  // parameters: tEXt is Latin-1 and would garble any other script.
  std::vector<png_text> chunks(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    chunks[i] = png_text{};
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(text[i].first.c_str());
    chunks[i].text = const_cast<char*>(text[i].second.c_str());
    chunks[i].itxt_length = text[i].second.size();
    chunks[i].lang = const_cast<char*>("");
    chunks[i].lang_key = const_cast<char*>("");
  }
  std::vector<png_bytep> rows((size_t)img.height);
  for (int y = 0; y < img.height; ++y) rows[(size_t)y] = const_cast<png_bytep>(img.at(0, y));
  const bool ok = png_write_all(png, info, img, chunks.data(), (int)chunks.size(), rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) fail(std::string("encode_png: ") + err.msg);
  return out;
}

// Writes all of `data` to fd, then fsync: the bytes are on disk before the rename makes them
// the file (else a crash after the rename can leave an empty or partial PNG under the name).
static bool write_all_and_sync(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n, size -= (size_t)n;
  }
  return ::fsync(fd) == 0;
}

// The data goes into an unnamed O_TMPFILE in the target folder, so that a process killed while
// writing (even by SIGKILL) leaves nothing behind; only when it is complete and synced does it
// get a name (a PID-suffixed temp name, for the microseconds until rename() replaces the target
// atomically). Filesystems without O_TMPFILE fall back to writing the named temp file directly.
void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp-" + std::to_string((long)::getpid());
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  auto fail_errno = [&](const std::string& what, int e) { fail("cannot write '" + path + "': " + what + std::strerror(e)); };
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);  // umask applies, as for fopen
  if (fd >= 0) {
    if (!write_all_and_sync(fd, data, size)) {
      const int e = errno;
      ::close(fd);
      fail_errno("", e);
    }
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ::unlink(tmp.c_str());  // a stale one from an earlier process with our PID
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      const int e = errno;
      ::close(fd);
      fail_errno("linking the finished file failed: ", e);
    }
    ::close(fd);
  } else {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) fail_errno("", errno);
    const bool ok = write_all_and_sync(fd, data, size);
    const int e = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(tmp.c_str());
      fail_errno("", e);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    fail_errno("rename failed: ", e);
  }
}

void write_png(const std::string& path, const Image& img, const TextChunks& text) {
  auto bytes = encode_png(img, text);
  write_file_atomic(path, bytes.data(), bytes.size());
}

TextChunks read_png_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read '" + path + "'");
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (b.size() < 8 || png_sig_cmp(b.data(), 0, 8) != 0) fail("'" + path + "' is not a PNG file");
  struct Cursor {
    const std::vector<uint8_t>* b;
    size_t pos;
  } cur{&b, 0};
  PngError err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    fail("PNG: out of memory");
  }
  png_set_read_fn(png, &cur, [](png_structp p, png_bytep data, png_size_t n) {
    auto* c = static_cast<Cursor*>(png_get_io_ptr(p));
    if (c->pos + n > c->b->size()) png_error(p, "truncated file");
    std::memcpy(data, c->b->data() + c->pos, n);
    c->pos += n;
  });
  TextChunks out;
  if (png_read_all(png, info)) {
    png_textp t = nullptr;
    const int n = png_get_text(png, info, &t, nullptr);
    for (int i = 0; i < n; ++i)
      out.emplace_back(t[i].key, std::string(t[i].text, t[i].compression >= PNG_ITXT_COMPRESSION_NONE
                                                            ? t[i].itxt_length
                                                            : t[i].text_length));
  }
  png_destroy_read_struct(&png, &info, nullptr);
  if (err.msg[0]) fail("'" + path + "': " + err.msg);
  return out;
}

// ---- float <-> 8 bit ------------------------------------------------------------------------

Image tensor_to_image(const float* nchw, int channels, int height, int width) {
  if (channels != 3 && channels != 1) fail("tensor_to_image: need 1 or 3 channels, got " + std::to_string(channels));
  Image img(width, height, channels);
  const size_t plane = (size_t)width * height;
  for (int c = 0; c < channels; ++c)
    for (size_t i = 0; i < plane; ++i) {
      float v = (nchw[c * plane + i] + 1.0f) / 2.0f;
      v = std::clamp(v, 0.0f, 1.0f);
      if (!(v >= 0.0f)) v = 0.0f;  // NaN (a diverged run) becomes black, not undefined
      img.pixels[i * channels + c] = (uint8_t)(v * 255.0f + 0.5f);
    }
  return img;
}

std::vector<float> image_to_tensor(const Image& img) {
  if (img.channels != 3) fail("image_to_tensor: need an RGB image");
  const size_t plane = (size_t)img.width * img.height;
  std::vector<float> t(3 * plane);
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < plane; ++i) t[c * plane + i] = img.pixels[i * 3 + c] / 127.5f - 1.0f;
  return t;
}

std::vector<float> image_to_mask(const Image& img) {
  if (img.channels != 1) fail("image_to_mask: need a grayscale image");
  std::vector<float> m(img.pixels.size());
  for (size_t i = 0; i < m.size(); ++i) m[i] = img.pixels[i] / 255.0f;
  return m;
}

Image contact_sheet(const std::vector<Image>& images, int cols, int pad) {
  if (images.empty()) fail("contact_sheet: no images");
  const int w = images[0].width, h = images[0].height, ch = images[0].channels;
  for (const auto& im : images)
    if (im.width != w || im.height != h || im.channels != ch) fail("contact_sheet: images differ in size");
  cols = std::max(1, std::min(cols, (int)images.size()));
  const int rows = ((int)images.size() + cols - 1) / cols;
  Image sheet(cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad, ch);
  std::fill(sheet.pixels.begin(), sheet.pixels.end(), (uint8_t)40);
  for (size_t k = 0; k < images.size(); ++k) {
    const int ox = pad + (int)(k % cols) * (w + pad), oy = pad + (int)(k / cols) * (h + pad);
    for (int y = 0; y < h; ++y) std::memcpy(sheet.at(ox, oy + y), images[k].at(0, y), (size_t)w * ch);
  }
  return sheet;
}

Image upscale_nearest(const Image& img, int factor) {
  if (factor <= 1) return img;
  Image out(img.width * factor, img.height * factor, img.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) std::memcpy(out.at(x, y), img.at(x / factor, y / factor), img.channels);
  return out;
}

}  // namespace vksd
