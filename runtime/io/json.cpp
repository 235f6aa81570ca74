#include "runtime/io/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

#include "runtime/error.h"

namespace vksd {

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  Json document() {
    Json v = value(0);
    ws();
    if (i_ != s_.size()) error("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail("JSON: " + what + " at byte " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(std::string("expected '") + c + "'");
  }
  bool literal(std::string_view w) {
    if (s_.substr(i_, w.size()) == w) {
      i_ += w.size();
      return true;
    }
    return false;
  }

  Json value(int depth) {
    if (depth > 256) error("nesting too deep");
    ws();
    if (i_ >= s_.size()) error("unexpected end of input");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.type_ = Json::Type::Object;
      std::unordered_set<std::string> seen;
      if (eat('}')) return v;
      do {
        ws();
        if (i_ >= s_.size() || s_[i_] != '"') error("expected a string key");
        std::string k = string();
        if (!seen.insert(k).second) error("duplicate key \"" + k + "\"");
        expect(':');
        v.obj_.emplace_back(std::move(k), value(depth + 1));
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.type_ = Json::Type::Array;
      if (eat(']')) return v;
      do v.arr_.push_back(value(depth + 1));
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.type_ = Json::Type::String;
      v.str_ = string();
    } else if (literal("true")) {
      v.type_ = Json::Type::Bool;
      v.b_ = true;
    } else if (literal("false")) {
      v.type_ = Json::Type::Bool;
    } else if (literal("null")) {
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.type_ = Json::Type::Number;
      v.num_ = number();
    } else {
      // A non-printable byte is shown as \xNN, not raw (a binary file's 0x89 would garble the terminal).
      char shown[8];
      if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f) std::snprintf(shown, sizeof shown, "'%c'", c);
      else std::snprintf(shown, sizeof shown, "\\x%02x", (unsigned)(unsigned char)c);
      error(std::string("unexpected character ") + shown);
    }
    return v;
  }

  double number() {
    size_t start = i_;
    if (s_[i_] == '-') ++i_;
    auto digits = [&] {
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (d == i_) error("malformed number");
    };
    digits();
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      digits();
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits();
    }
    std::string tok(s_.substr(start, i_ - start));
    return std::strtod(tok.c_str(), nullptr);
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& o, unsigned cp) {
    if (cp < 0x80) o += (char)cp;
    else if (cp < 0x800) { o += (char)(0xC0 | (cp >> 6)); o += (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { o += (char)(0xE0 | (cp >> 12)); o += (char)(0x80 | ((cp >> 6) & 0x3F)); o += (char)(0x80 | (cp & 0x3F)); }
    else { o += (char)(0xF0 | (cp >> 18)); o += (char)(0x80 | ((cp >> 12) & 0x3F)); o += (char)(0x80 | ((cp >> 6) & 0x3F)); o += (char)(0x80 | (cp & 0x3F)); }
  }

  std::string string() {
    ++i_;  // opening quote
    std::string o;
    while (true) {
      if (i_ >= s_.size()) error("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if ((unsigned char)c < 0x20) error("control character in string");
      if (c != '\\') {
        o += c;
        continue;
      }
      if (i_ >= s_.size()) error("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': o += '"'; break;
        case '\\': o += '\\'; break;
        case '/': o += '/'; break;
        case 'b': o += '\b'; break;
        case 'f': o += '\f'; break;
        case 'n': o += '\n'; break;
        case 'r': o += '\r'; break;
        case 't': o += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
            if (!literal("\\u")) error("lone high surrogate");
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("lone low surrogate");
          }
          put_utf8(o, cp);
          break;
        }
        default: error(std::string("bad escape '\\") + e + "'");
      }
    }
    return o;
  }

  std::string_view s_;
  size_t i_ = 0;
};

Json Json::parse(std::string_view text) { return JsonParser(text).document(); }

static const char* type_name(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "a boolean";
    case Json::Type::Number: return "a number";
    case Json::Type::String: return "a string";
    case Json::Type::Array: return "an array";
    case Json::Type::Object: return "an object";
  }
  return "?";
}

static void want(const Json& j, Json::Type t, const char* what) {
  if (j.type() != t)
    fail(std::string("JSON: ") + what + " should be " + type_name(t) + ", found " + type_name(j.type()));
}

bool Json::as_bool(const char* what) const { want(*this, Type::Bool, what); return b_; }
double Json::as_number(const char* what) const { want(*this, Type::Number, what); return num_; }
int64_t Json::as_int(const char* what) const {
  want(*this, Type::Number, what);
  if (num_ != std::floor(num_) || std::fabs(num_) > 9.007199254740992e15)
    fail(std::string("JSON: ") + what + " should be an integer, found " + std::to_string(num_));
  return (int64_t)num_;
}
const std::string& Json::as_string(const char* what) const { want(*this, Type::String, what); return str_; }
const std::vector<Json>& Json::as_array(const char* what) const { want(*this, Type::Array, what); return arr_; }
const std::vector<std::pair<std::string, Json>>& Json::as_object(const char* what) const {
  want(*this, Type::Object, what);
  return obj_;
}

const Json* Json::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  for (auto& [k, v] : obj_)
    if (k == key) return &v;
  return nullptr;
}
double Json::number_or(std::string_view key, double dflt) const {
  const Json* v = find(key);
  return v && !v->is_null() ? v->as_number(std::string(key).c_str()) : dflt;
}
int64_t Json::int_or(std::string_view key, int64_t dflt) const {
  const Json* v = find(key);
  return v && !v->is_null() ? v->as_int(std::string(key).c_str()) : dflt;
}
std::string Json::string_or(std::string_view key, const std::string& dflt) const {
  const Json* v = find(key);
  return v && !v->is_null() ? v->as_string(std::string(key).c_str()) : dflt;
}
bool Json::bool_or(std::string_view key, bool dflt) const {
  const Json* v = find(key);
  return v && !v->is_null() ? v->as_bool(std::string(key).c_str()) : dflt;
}

Json Json::make_string(std::string s) {
  Json j;
  j.type_ = Type::String;
  j.str_ = std::move(s);
  return j;
}
Json Json::make_number(double v) {
  Json j;
  j.type_ = Type::Number;
  j.num_ = v;
  return j;
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if ((unsigned char)c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", (unsigned char)c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o;
}

}  // namespace vksd
