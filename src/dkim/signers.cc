// The per-shard signer set (signers.hh). The From: domain is read from the header section
// only; the body is never looked at here (the signer hashes it as it streams).
#include "sealrelay/dkim/signers.hh"

#include "sealrelay/smtp/header_section.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/text.hh"

namespace sr::dkim {

namespace {

std::string lowercase(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return r;
}

std::span<const std::span<const std::byte>> one_span(const std::string& text, std::span<const std::byte>& holder) {
  holder = {reinterpret_cast<const std::byte*>(text.data()), text.size()};
  return {&holder, 1};
}

}  // namespace

std::string from_domain(std::span<const std::span<const std::byte>> chunks) {
  // Only the header section is copied (header_section stops at its empty line), once per
  // message and shard thread into a reused buffer.
  thread_local smtp::header_section head;
  head.clear();
  for (const auto& c : chunks) {
    head.feed(c);
    if (head.complete() || head.truncated()) break;
  }
  auto from = head.field("from");
  if (!from) return {};
  auto addrs = smtp::mailbox_addresses(*from);
  if (addrs.empty()) return {};
  const std::string& a = addrs.front();
  const auto at = a.rfind('@');
  if (at == std::string::npos) return {};
  return lowercase(std::string_view(a).substr(at + 1));
}

result<signer> make_signer(const key_entry& e, std::string* warning) {
  auto key = tls::signing_key::load_pem_file(e.key_file, warning);
  if (!key) return error{"key_file: " + e.key_file + ": " + key.err()};
  if (key->kind() != e.kind)
    return error{"algorithm: " + std::string(e.kind == tls::key_kind::rsa ? "rsa-sha256" : "ed25519-sha256") +
                 " needs an " + std::string(tls::to_string(e.kind)) + " key, but " + e.key_file + " holds an " +
                 std::string(tls::to_string(key->kind())) + " key"};
  signer_config c;
  c.domain = e.domain;
  c.selector = e.selector;
  if (!e.headers.empty()) c.headers = e.headers;
  auto s = signer::create(std::move(c), std::move(*key));
  if (!s) {
    // "dkim: domain ..." -> "domain: dkim: domain ...": the key at fault first.
    const std::string& m = s.err();
    const char* field = m.starts_with("dkim: domain") ? "domain" : m.starts_with("dkim: selector") ? "selector" : "headers";
    return error{std::string(field) + ": " + m};
  }
  return std::move(*s);
}

result<signers> signers::load(std::span<const key_entry> entries) {
  signers set;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto s = make_signer(entries[i]);
    if (!s) return error{"dkim[" + std::to_string(i) + "]." + s.err()};
    set._domains.push_back(lowercase(entries[i].domain));
    set._signers.push_back(std::move(*s));
  }
  return set;
}

size_t signers::find(std::string_view domain) const {
  if (domain.empty()) return npos;
  for (size_t i = 0; i < _domains.size(); ++i)
    if (iequals(_domains[i], domain)) return i;
  return npos;
}

std::optional<std::string> signers::sign(std::span<const std::span<const std::byte>> chunks, int64_t now) {
  if (_signers.empty()) return std::nullopt;
  const size_t i = find(from_domain(chunks));
  if (i == npos) return std::nullopt;
  auto r = _signers[i].sign(chunks, now);
  if (!r) {
    SR_WARN("dkim: d=%s: not signed: %s", _domains[i].c_str(), r.err().c_str());
    return std::nullopt;
  }
  return std::move(*r);
}

bool signers::sign_owned(std::string& text, int64_t now) {
  std::span<const std::byte> holder;
  auto field = sign(one_span(text, holder), now);
  if (!field) return false;
  text.insert(0, *field);
  return true;
}

}  // namespace sr::dkim
