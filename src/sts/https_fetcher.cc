// The policy fetch over the engine's HTTPS client; every RFC 8461 §3.3 rule is enforced by
// https::client from the request's fields, so this only builds the request and names the
// failure for the log.
#include "sealrelay/sts/https_fetcher.hh"

#include "sealrelay/sts/policy.hh"

namespace sr::sts {

void https_fetcher::fetch(std::string_view domain, std::function<void(const fetch_result&)> done) {
  https::request r;
  r.method = "GET";
  r.host = "mta-sts." + std::string(domain);
  r.port = _port;
  r.path = "/.well-known/mta-sts.txt";
  r.expect_content_type = "text/plain";
  r.max_body = max_policy_bytes;
  r.timeout_ms = 60000;
  _client.fetch(std::move(r), [done = std::move(done)](const https::response& resp) {
    fetch_result f;
    f.ok = resp.fail == https::failure::none;
    if (f.ok) {
      f.body = resp.body;
    } else {
      f.cert_failed = resp.fail == https::failure::cert;
      f.detail = https::to_string(resp.fail);
      if (!resp.detail.empty()) f.detail += ": " + resp.detail;
    }
    done(f);
  });
}

}  // namespace sr::sts
