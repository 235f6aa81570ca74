// Text cleaning in front of the CLIP tokenizer, reproducing what OpenAI's simple_tokenizer does
// to a prompt before splitting it into words:
//   basic_clean:      html.unescape(html.unescape(text)).strip()
//   whitespace_clean: every run of whitespace becomes one ' ', then strip
//   lower():          Unicode lower-casing
// (ftfy.fix_text, the first step of basic_clean, is NOT reproduced: it repairs mojibake, curly
// quotes, ligatures, full-width forms and NFC-normalises; the reference vectors were made with
// it stubbed out as the identity, which it is for ordinary typed prompts.)
//
// Unicode properties come from utf8proc, not from hand-made tables. Strings are UTF-8 on both
// sides; invalid UTF-8 is an Error that names the byte offset.
#pragma once
#include <string>
#include <string_view>

namespace vksd {

// Code points of a UTF-8 string; throws vksd::Error("<what> is not valid UTF-8 (byte N)").
std::u32string utf8_decode(std::string_view s, const char* what = "text");
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);

// Python's str.isspace() (what strip() removes): general category Zs or bidirectional class
// WS, B or S (so \t \n \v \f \r, U+001C..U+001F, U+0085, U+00A0, U+2028, U+3000, ... count).
bool is_unicode_space(char32_t c);
// The `regex` module's \s, which simple_tokenizer uses for collapsing and splitting: the same
// set except the information separators U+001C..U+001F (those survive as symbol characters).
bool is_regex_space(char32_t c);
bool is_unicode_letter(char32_t c);  // \p{L}: Lu Ll Lt Lm Lo
bool is_unicode_number(char32_t c);  // \p{N}: Nd Nl No

// Python's html.unescape (HTML5 rules): numeric references (&#65; &#x41;, ';' optional, the
// Windows-1252 remapping of 0x80..0x9F, U+FFFD for surrogates/out of range, nothing for
// non-characters) and the 2231 HTML5 named references (runtime/text/html_entities.inc), including
// the legacy names that work without ';' and its longest-prefix rule ("&notit" -> "¬it").
std::string html_unescape(std::string_view s);

// str.strip() (is_unicode_space), then regex.sub(r'\s+', ' ', ...) (is_regex_space).
std::string collapse_whitespace(std::string_view s);

// Python's str.lower(): utf8proc's simple lower-case mapping plus the two context rules Python
// applies: U+0130 'İ' -> "i̇" (two code points) and the final-sigma rule (Σ at the end of a
// word becomes ς, with Unicode's Cased and Case_Ignorable properties).
std::string unicode_lower(std::string_view s);

// All of simple_tokenizer's cleaning: collapse_whitespace(strip(unescape(unescape(text)))).lower()
std::string clip_clean_text(std::string_view text);

}  // namespace vksd
