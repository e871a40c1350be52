// The escrow store suite (store_suite.cc): every backend runs the same tests through a
// factory. A backend's test file instantiates it:
//   INSTANTIATE_TEST_SUITE_P(sqlite, EscrowStore, testing::Values(store_factory{...}));
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/escrow_store.hh"
#include "support/temp_dir.hh"

namespace sr::fallback::test {

struct store_factory {
  std::string name;  // the instantiation's label ("sqlite", "postgresql")
  // Make an empty store whose files (if any) go under `dir`; nullptr (and a gtest failure
  // or skip) when the backend cannot be reached.
  std::function<std::unique_ptr<escrow_store>(const std::filesystem::path& dir)> make;
};

inline void PrintTo(const store_factory& f, std::ostream* os) { *os << f.name; }

using namespace std::chrono_literals;

inline const seconds_t t0{std::chrono::seconds{1'800'000'000}};
inline constexpr std::string_view body =
    "From: lab@bank.example\r\nSubject: Your results 4711\r\n\r\nConfidential: all fine.\r\n";

inline std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string text_of(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

class EscrowStore : public testing::TestWithParam<store_factory> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(_dir.path().empty());
    _store = GetParam().make(_dir.path());
    if (!_store && !IsSkipped()) FAIL() << GetParam().name << ": no store";
  }

  escrow::link deposit(std::string_view msg_id = "<m1@bank.example>",
                       std::string_view rcpt = "pat@clinic.example",
                       std::chrono::seconds expiry = 30 * 24h) {
    auto l = escrow::deposit(*_store, bytes_of(body), msg_id, "lab@bank.example", rcpt, t0,
                             expiry);
    EXPECT_TRUE(l) << l.err();
    return l ? *l : escrow::link{};
  }

  escrow::opened open(const escrow::link& l, seconds_t now = t0 + 1s) {
    auto o = escrow::open(*_store, l.id, l.secret, now);
    EXPECT_TRUE(o) << o.err();
    return o ? std::move(*o) : escrow::opened{};
  }

  sr::test::temp_dir _dir{"sealrelay-escrow"};
  std::unique_ptr<escrow_store> _store;
};

}  // namespace sr::fallback::test
