// The failure's class comes from fetch_result::cert_failed (the WebPKI check) and from
// parsing the body with the same strict parser sts::resolver uses.
#include "sealrelay/tlsrpt/sts_fetcher.hh"

#include <string>

#include "sealrelay/sts/policy.hh"
#include "sealrelay/tlsrpt/reporter.hh"

namespace sr::tlsrpt {

report::result_type sts_fetch_result_type(const sts::fetch_result& r) {
  if (r.ok) return sts::parse_policy(r.body) ? report::result_type::none : report::result_type::sts_policy_invalid;
  if (r.cert_failed) return report::result_type::sts_webpki_invalid;
  return report::result_type::sts_policy_fetch_error;
}

void reporting_fetcher::fetch(std::string_view domain, std::function<void(const sts::fetch_result&)> done) {
  _inner.fetch(domain, [this, d = std::string(domain), done = std::move(done)](const sts::fetch_result& r) {
    report::result_type t = sts_fetch_result_type(r);
    if (t != report::result_type::none && _rep) _rep->policy_failure(d, t, r.ok ? "invalid policy" : r.detail);
    done(r);
  });
}

}  // namespace sr::tlsrpt
