// A gtest fixture base for unit tests that run a module on a real shard whose DNS resolver
// asks the loopback DNS fixture (tests/tools/dns_zone.py over ldns-testns): start both, then
// run the shard loop until the test stops it or a deadline passes. Header-only; needs
// test_support_dep (dns_fixture) and the core and dns modules.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "support/peers.hh"

namespace sr::test {

class shard_dns_test : public ::testing::Test {
 protected:
  // Start the DNS fixture on `zone`, the shard and its resolver; skips the test without
  // ldns-testns. Callers return from SetUp when IsSkipped() or HasFatalFailure().
  void start_shard_dns(const std::string& zone) {
    if (access("/usr/bin/ldns-testns", X_OK) != 0) GTEST_SKIP() << "ldns-testns not installed (Debian package ldnsutils)";
    _ns = std::make_unique<integ::dns_fixture>(zone);
    ASSERT_TRUE(_ns->start()) << _ns->error() << _ns->log();
    ASSERT_TRUE(_sh.init()) << "io_uring unavailable";
    dns::resolver_options o;
    o.servers = {_ns->address()};
    _dns = std::make_unique<dns::resolver>(_sh, o);
    ASSERT_TRUE(_dns->start().ok());
    _sh.on_tick([this] {
      on_tick();
      if (_sh.now_ms() > _deadline_ms) {
        _timed_out = true;
        _sh.stop();
      }
    });
  }
  // Called on every tick of the shard loop, before the deadline check.
  virtual void on_tick() {}
  // Post `first` and run the shard loop (once per test: a stopped shard stays stopped) until
  // something stops it; false when `limit_ms` passed first.
  bool run_loop(uint64_t limit_ms, std::function<void()> first) {
    _deadline_ms = _sh.now_ms() + limit_ms;
    _sh.post(std::move(first));
    _sh.run();
    return !_timed_out;
  }

  // Destroyed in reverse: the resolver before the shard; a derived fixture's members
  // (the module under test) go before all three.
  std::unique_ptr<integ::dns_fixture> _ns;
  core::shard _sh{core::shard::options{}};
  std::unique_ptr<dns::resolver> _dns;

 private:
  uint64_t _deadline_ms = ~uint64_t(0);
  bool _timed_out = false;
};

}  // namespace sr::test
