#include "runtime/io/jpeg_decode.h"

#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstring>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "runtime/error.h"

namespace vksd {

// Fill bytes (0xFF) before the marker are let through to libjpeg, which names them.
bool is_jpeg(std::string_view b) {
  size_t i = 0;
  while (i + 1 < b.size() && (uint8_t)b[i] == 0xff && (uint8_t)b[i + 1] == 0xff) ++i;
  return i + 1 < b.size() && (uint8_t)b[i] == 0xff && (uint8_t)b[i + 1] == 0xd8;
}

namespace {

// libjpeg reports errors by calling error_exit, which must not return: we longjmp back to the
// setjmp in the function that called libjpeg. Those functions hold only trivially destructible
// locals, so the jump skips no destructor.
struct JpegState {
  jpeg_error_mgr err;  // first: libjpeg hands &err back to the callbacks as cinfo->err
  jpeg_progress_mgr progress;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX + 160];
  unsigned long long visits, visit_budget;
  int last_scan;
};

JpegState* state_of(j_common_ptr c) { return reinterpret_cast<JpegState*>(c->err); }

[[noreturn]] void on_error(j_common_ptr c) {
  JpegState* s = state_of(c);
  if (c->err->msg_code == JERR_NO_BACKING_STORE)  // the working-memory cap was reached
    std::snprintf(s->msg, sizeof s->msg, "decoding it needs more than %zu MiB of working memory (vksd's limit for JPEGs)",
                  kJpegMaxWorkingBytes >> 20);
  else {
    char m[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, m);
    std::snprintf(s->msg, sizeof s->msg, "corrupt JPEG (%s)", m);
  }
  std::longjmp(s->jump, 1);
}

// Warnings (level -1) are corrupt or missing entropy data that libjpeg would fill with zeros:
// an error here. Bytes between segments (JWRN_EXTRANEOUS_DATA) are skipped harmlessly.
void on_message(j_common_ptr c, int level) {
  if (level < 0 && c->err->msg_code != JWRN_EXTRANEOUS_DATA) {
    if (c->err->msg_code == JWRN_JPEG_EOF || c->err->msg_code == JWRN_HIT_MARKER) {
      JpegState* s = state_of(c);
      std::snprintf(s->msg, sizeof s->msg, "truncated or corrupt JPEG (the image data ends before the image is complete)");
      std::longjmp(s->jump, 1);
    }
    on_error(c);
  }
}

// Called while scans are read: counts the 8x8 blocks each new scan covers (see kJpegMaxScanPasses).
void on_progress(j_common_ptr c) {
  auto* d = reinterpret_cast<j_decompress_ptr>(c);
  JpegState* s = state_of(c);
  if (d->input_scan_number == s->last_scan) return;
  s->last_scan = d->input_scan_number;
  for (int i = 0; i < d->comps_in_scan; ++i)
    s->visits += (unsigned long long)d->cur_comp_info[i]->width_in_blocks * d->cur_comp_info[i]->height_in_blocks;
  if (s->visits > s->visit_budget) {
    std::snprintf(s->msg, sizeof s->msg,
                  "its %d progressive scans would visit each 8x8 block more than %d times (a decoding-time bomb)",
                  s->last_scan, kJpegMaxScanPasses);
    std::longjmp(s->jump, 1);
  }
}

struct Header {
  int width, height, components;
  bool arithmetic, cmyk;
};

// jpeg_create_decompress + jpeg_read_header on `d`; false (message in s) on error.
bool read_header(jpeg_decompress_struct* d, JpegState* s, std::string_view bytes, Header* h) {
  if (setjmp(s->jump)) return false;
  jpeg_create_decompress(d);
  d->progress = &s->progress;
  jpeg_mem_src(d, reinterpret_cast<const unsigned char*>(bytes.data()), (unsigned long)bytes.size());
  jpeg_read_header(d, TRUE);
  *h = Header{(int)d->image_width, (int)d->image_height, d->num_components, d->arith_code != 0,
              d->jpeg_color_space == JCS_CMYK || d->jpeg_color_space == JCS_YCCK};
  return true;
}

// Everything after the header: all scans, then the pixels row by row into `out`
// (width * out_channels bytes per row); false (message in s) on error.
// The buffer grows as rows arrive, so a file that declares a huge frame but whose data ends
// early fails before the whole frame's memory is allocated.
bool decode_pixels(jpeg_decompress_struct* d, JpegState* s, J_COLOR_SPACE space, int out_channels, std::vector<unsigned char>* out) {
  if (setjmp(s->jump)) return false;
  d->out_color_space = space;
  d->mem->max_memory_to_use = (long)kJpegMaxWorkingBytes;
  unsigned long long blocks = 0;
  for (int i = 0; i < d->num_components; ++i)
    blocks += (unsigned long long)d->comp_info[i].width_in_blocks * d->comp_info[i].height_in_blocks;
  s->visit_budget = blocks * kJpegMaxScanPasses > kJpegFreeBlockVisits ? blocks * kJpegMaxScanPasses : kJpegFreeBlockVisits;
  jpeg_start_decompress(d);  // a progressive JPEG's scans are all read here
  const size_t stride = (size_t)d->output_width * out_channels;
  while (d->output_scanline < d->output_height) {
    out->resize(out->size() + stride);
    JSAMPROW row = out->data() + (size_t)d->output_scanline * stride;
    jpeg_read_scanlines(d, &row, 1);
  }
  jpeg_finish_decompress(d);
  return true;
}

}  // namespace

Image decode_jpeg(std::string_view bytes, const std::string& name, int channels) {
  const std::string where = "cannot read image '" + name + "': ";
  JpegState s{};
  jpeg_decompress_struct d{};
  d.err = jpeg_std_error(&s.err);
  s.err.error_exit = on_error;
  s.err.emit_message = on_message;
  s.progress.progress_monitor = on_progress;
  struct Destroy {  // safe on a struct jpeg_create_decompress never initialised (mem stays null)
    jpeg_decompress_struct* d;
    ~Destroy() { jpeg_destroy_decompress(d); }
  } destroy{&d};
  Header h{};
  if (!read_header(&d, &s, bytes, &h)) fail(where + s.msg);
  if (h.width <= 0 || h.height <= 0) fail(where + "it is " + std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels");
  if (h.width > kMaxImageSide || h.height > kMaxImageSide)
    fail("image '" + name + "' is " + std::to_string(h.width) + "x" + std::to_string(h.height) +
         " pixels; vksd reads images of at most " + std::to_string(kMaxImageSide) + " pixels per side");
  if (h.arithmetic) fail(where + "arithmetic-coded JPEGs are not supported (re-save it as an ordinary JPEG or a PNG)");
  // CMYK is decoded as is and turned into RGB below; gray and RGB come straight from libjpeg.
  const int dec_channels = h.cmyk ? 4 : channels;
  const J_COLOR_SPACE space = h.cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_EXT_RGBA;
  const size_t n = (size_t)h.width * h.height;
  std::vector<unsigned char> px;
  if (!decode_pixels(&d, &s, space, dec_channels, &px)) fail(where + s.msg);
  Image img;
  img.width = h.width, img.height = h.height, img.channels = channels;
  if (!h.cmyk) {
    img.pixels = std::move(px);
    return img;
  }
  img.pixels.resize(n * channels);
  // Adobe CMYK JPEGs store inverted ink values, so R = C * K / 255 (stb_image's rule too).
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* p = &px[i * 4];
    const int k = p[3], r = p[0] * k / 255, g = p[1] * k / 255, b = p[2] * k / 255;
    unsigned char* o = &img.pixels[i * channels];
    if (channels == 1) {
      o[0] = (unsigned char)((r * 77 + g * 150 + b * 29) >> 8);
    } else {
      o[0] = (unsigned char)r, o[1] = (unsigned char)g, o[2] = (unsigned char)b;
      if (channels == 4) o[3] = 255;
    }
  }
  return img;
}

}  // namespace vksd
