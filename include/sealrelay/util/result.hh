// Small result types for code that must not throw (the data path, start-up checks).
// `result<T>` holds a value or an error message; `status` is result without a value.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sr {

struct error {
  std::string message;
};

template <typename T>
class result {
 public:
  result(T v) : _v(std::move(v)) {}
  result(error e) : _v(std::move(e)) {}
  bool ok() const { return _v.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(_v); }
  const T& value() const { return std::get<0>(_v); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const std::string& err() const { return std::get<1>(_v).message; }

 private:
  std::variant<T, error> _v;
};

class status {
 public:
  status() = default;
  status(error e) : _err(std::move(e.message)) {}
  static status success() { return {}; }
  bool ok() const { return !_err; }
  explicit operator bool() const { return ok(); }
  const std::string& err() const { return *_err; }

 private:
  std::optional<std::string> _err;
};

}  // namespace sr
