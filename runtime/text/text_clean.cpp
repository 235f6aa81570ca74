// Prompt text cleaning as OpenAI's simple_tokenizer does it (see text_clean.h for the rules).
#include "runtime/text/text_clean.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

#include "runtime/error.h"

namespace vksd {

// ---- UTF-8 ---------------------------------------------------------------------------------

std::u32string utf8_decode(std::string_view s, const char* what) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(s.size() - i), &cp);
    if (n <= 0 || cp < 0) fail(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(i) + ")");
    out.push_back((char32_t)cp);
    i += (size_t)n;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)c, buf);
  out.append(reinterpret_cast<const char*>(buf), (size_t)n);
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

// ---- Unicode classes -----------------------------------------------------------------------

bool is_unicode_space(char32_t c) {
  if (c == U' ') return true;
  if (c < 0x80 && !(c >= 0x09 && c <= 0x0d) && !(c >= 0x1c && c <= 0x1f)) return false;
  const utf8proc_property_t* p = utf8proc_get_property((utf8proc_int32_t)c);
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

bool is_regex_space(char32_t c) { return is_unicode_space(c) && !(c >= 0x1c && c <= 0x1f); }

bool is_unicode_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= U'a' && (c | 0x20) <= U'z';
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool is_unicode_number(char32_t c) {
  if (c < 0x80) return c >= U'0' && c <= U'9';
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

// ---- html.unescape -------------------------------------------------------------------------

namespace {

struct Entity {
  const char* name;
  const char* utf8;
};
constexpr Entity kEntities[] = {
#include "runtime/text/html_entities.inc"
};

const char* find_entity(std::string_view name) {
  auto it = std::lower_bound(std::begin(kEntities), std::end(kEntities), name,
                             [](const Entity& e, std::string_view n) { return std::string_view(e.name) < n; });
  return it != std::end(kEntities) && name == it->name ? it->utf8 : nullptr;
}

// HTML5's numeric character reference rules (what Python's html._replace_charref does).
void append_numeric_reference(std::string& out, uint64_t num) {
  // Windows-1252 meanings that browsers give to the C1 range (and NUL, CR).
  static const char32_t kCp1252[32] = {
      0x20ac, 0x81,   0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x8d,   0x017d, 0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
      0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d,   0x017e, 0x0178};
  if (num == 0) return utf8_append(out, 0xfffd);
  if (num == 0x0d) return utf8_append(out, U'\r');
  if (num >= 0x80 && num <= 0x9f) return utf8_append(out, kCp1252[num - 0x80]);
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return utf8_append(out, 0xfffd);
  const bool invalid = (num >= 0x1 && num <= 0x8) || num == 0xb || (num >= 0xe && num <= 0x1f) ||
                       (num >= 0x7f && num <= 0x9f) || (num >= 0xfdd0 && num <= 0xfdef) ||
                       (num & 0xfffe) == 0xfffe;
  if (invalid) return;  // non-characters and controls vanish
  utf8_append(out, (char32_t)num);
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
int hex_value(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// Length in bytes of the UTF-8 sequence starting with lead byte b (input is already valid).
size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4; }

}  // namespace

std::string html_unescape(std::string_view s) {
  if (s.find('&') == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out.push_back(s[i++]);
      continue;
    }
    const size_t start = i + 1;  // after '&'
    // Numeric: &#[0-9]+;?  or  &#[xX][0-9a-fA-F]+;?
    if (start < s.size() && s[start] == '#') {
      size_t j = start + 1;
      bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
      if (hex) ++j;
      const size_t digits_begin = j;
      uint64_t num = 0;
      while (j < s.size() && (hex ? is_hex(s[j]) : (s[j] >= '0' && s[j] <= '9'))) {
        num = num * (hex ? 16 : 10) + (uint64_t)(hex ? hex_value(s[j]) : s[j] - '0');
        if (num > 0x10ffff) num = 0x110000;  // saturate: anything this large is out of range
        ++j;
      }
      if (j > digits_begin) {
        if (j < s.size() && s[j] == ';') ++j;
        append_numeric_reference(out, num);
        i = j;
        continue;
      }
      out.push_back('&');  // "&#" not followed by digits: literal
      i = start;
      continue;
    }
    // Named: [^\t\n\f <&#;]{1,32};?  (32 code points)
    size_t j = start;
    int count = 0;
    while (j < s.size() && count < 32) {
      char c = s[j];
      if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
      j += utf8_len((unsigned char)c);
      ++count;
    }
    if (count == 0) {
      out.push_back('&');
      i = start;
      continue;
    }
    if (j < s.size() && s[j] == ';') ++j;
    std::string_view ref = s.substr(start, j - start);
    if (const char* rep = find_entity(ref)) {
      out += rep;
    } else {
      // The longest prefix (at least 2 bytes, shorter than the whole) that is a legacy name.
      bool found = false;
      for (size_t x = ref.size() - 1; x >= 2 && !found; --x) {
        if (const char* rep2 = find_entity(ref.substr(0, x))) {
          out += rep2;
          out += ref.substr(x);
          found = true;
        }
      }
      if (!found) {
        out.push_back('&');
        out += ref;
      }
    }
    i = j;
  }
  return out;
}

// ---- whitespace ----------------------------------------------------------------------------

std::string collapse_whitespace(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  size_t b = 0, e = cps.size();
  while (b < e && is_unicode_space(cps[b])) ++b;
  while (e > b && is_unicode_space(cps[e - 1])) --e;
  // After the strip both ends are non-space, so collapsing the inside cannot create new ends.
  std::string out;
  out.reserve(s.size());
  for (size_t i = b; i < e; ++i) {
    if (is_regex_space(cps[i])) {
      while (i + 1 < e && is_regex_space(cps[i + 1])) ++i;
      out.push_back(' ');
    } else {
      utf8_append(out, cps[i]);
    }
  }
  return out;
}

// ---- lower() -------------------------------------------------------------------------------

namespace {

// Unicode's Cased property: Lu, Ll, Lt, plus Other_Lowercase / Other_Uppercase. Most of the
// latter have case mappings (Roman numerals, circled letters); utf8proc exposes no property for
// the few that do not (ª, º, the squared Latin capitals), so they are listed.
bool is_cased(char32_t c) {
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return true;
  if (utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c || utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c)
    return true;
  return c == 0xaa || c == 0xba || (c >= 0x1f130 && c <= 0x1f149) || (c >= 0x1f150 && c <= 0x1f169) ||
         (c >= 0x1f170 && c <= 0x1f189);
}

// Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk and the Word_Break classes MidLetter,
// MidNumLet and Single_Quote (listed: utf8proc does not expose word-break classes).
bool is_case_ignorable(char32_t c) {
  static const char32_t kMid[] = {U'\'', U'.',   U':',   0x00b7, 0x0387, 0x055f, 0x05f4, 0x2018, 0x2019,
                                  0x2024, 0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a};
  for (char32_t m : kMid)
    if (c == m) return true;
  auto cat = utf8proc_category((utf8proc_int32_t)c);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

// Unicode's Final_Sigma condition at position i of cps (which holds a capital sigma).
bool is_final_sigma(const std::u32string& cps, size_t i) {
  size_t j = i;
  bool cased_before = false;
  while (j > 0) {
    char32_t c = cps[--j];
    if (is_case_ignorable(c)) continue;
    cased_before = is_cased(c);
    break;
  }
  if (!cased_before) return false;
  for (size_t k = i + 1; k < cps.size(); ++k) {
    if (is_case_ignorable(cps[k])) continue;
    return !is_cased(cps[k]);
  }
  return true;
}

}  // namespace

std::string unicode_lower(std::string_view s) {
  std::u32string cps = utf8_decode(s);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    char32_t c = cps[i];
    if (c < 0x80) {
      out.push_back((char)(c >= U'A' && c <= U'Z' ? c + 32 : c));
    } else if (c == 0x0130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE: full mapping is i + U+0307
      out.push_back('i');
      utf8_append(out, 0x0307);
    } else if (c == 0x03a3) {  // GREEK CAPITAL SIGMA
      utf8_append(out, is_final_sigma(cps, i) ? 0x03c2 : 0x03c3);
    } else {
      utf8_append(out, (char32_t)utf8proc_tolower((utf8proc_int32_t)c));
    }
  }
  return out;
}

std::string clip_clean_text(std::string_view text) {
  utf8_decode(text, "prompt");  // reject invalid UTF-8 up front, naming the input
  std::string t = html_unescape(html_unescape(text));
  // basic_clean's strip() followed by whitespace_clean's collapse + strip: collapsing already
  // drops leading and trailing whitespace.
  return unicode_lower(collapse_whitespace(t));
}

}  // namespace vksd
