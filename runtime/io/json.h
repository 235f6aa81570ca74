// A small JSON reader (RFC 8259) for the files vksd reads: safetensors headers, model configs,
// diffusers config.json, tokenizer vocab.json. Parse errors name the byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vksd {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Json() = default;
  static Json parse(std::string_view text);  // throws vksd::Error("JSON: ... at byte N")

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Checked accessors: a wrong type throws vksd::Error naming `what`.
  bool as_bool(const char* what = "value") const;
  double as_number(const char* what = "value") const;
  int64_t as_int(const char* what = "value") const;  // must be integral
  const std::string& as_string(const char* what = "value") const;
  const std::vector<Json>& as_array(const char* what = "value") const;
  // Object members in file order (duplicate keys are a parse error).
  const std::vector<std::pair<std::string, Json>>& as_object(const char* what = "value") const;

  // Object lookup: nullptr when absent (or when this is not an object).
  const Json* find(std::string_view key) const;
  // Convenience with defaults for optional config fields.
  double number_or(std::string_view key, double dflt) const;
  int64_t int_or(std::string_view key, int64_t dflt) const;
  std::string string_or(std::string_view key, const std::string& dflt) const;
  bool bool_or(std::string_view key, bool dflt) const;

  static Json make_string(std::string s);
  static Json make_number(double v);

 private:
  friend class JsonParser;
  Type type_ = Type::Null;
  bool b_ = false;
  double num_ = 0;
  std::string str_;
  std::vector<Json> arr_;
  std::vector<std::pair<std::string, Json>> obj_;
};

// Escape a string for writing JSON.
std::string json_escape(std::string_view s);

}  // namespace vksd
