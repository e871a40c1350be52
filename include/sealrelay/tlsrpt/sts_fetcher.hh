// The MTA-STS side of TLS-RPT (RFC 8460 §4.3.2.2): an sts::fetcher that passes every
// policy fetch through to the real one and tells the shard's reporter when the policy could
// not be had: sts-webpki-invalid (the policy host's certificate did not verify),
// sts-policy-invalid (fetched, but not a valid RFC 8461 policy), sts-policy-fetch-error
// (anything else: DNS, connect, TLS, HTTP status, redirect, size, timeout). The composition
// root puts it between sts::resolver and the HTTPS fetcher.
#pragma once
#include <functional>
#include <string_view>

#include "sealrelay/report/reason.hh"
#include "sealrelay/sts/resolver.hh"

namespace sr::tlsrpt {

class reporter;

// Return the RFC 8460 result type of a failed or invalid policy fetch (none: a valid policy).
report::result_type sts_fetch_result_type(const sts::fetch_result& r);

class reporting_fetcher final : public sts::fetcher {
 public:
  // Fetch through `inner` (which must outlive this); report to `rep` (may be null: set later).
  explicit reporting_fetcher(sts::fetcher& inner, reporter* rep = nullptr) : _inner(inner), _rep(rep) {}
  void set_reporter(reporter* rep) { _rep = rep; }
  // Fetch `domain`'s policy through the inner fetcher; a failure is counted before `done` runs.
  void fetch(std::string_view domain, std::function<void(const sts::fetch_result&)> done) override;

 private:
  sts::fetcher& _inner;
  reporter* _rep;
};

}  // namespace sr::tlsrpt
