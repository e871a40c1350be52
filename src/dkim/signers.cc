// The per-shard signer set (signers.hh). The From: domain is read from the header section
// only; the body is never looked at here (the signer hashes it as it streams).
#include "sealrelay/dkim/signers.hh"

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
  // TEMPORARY until smtp::header_section lands: the first From: field, unfolded.
  std::string head;
  for (const auto& c : chunks) {
    head.append(reinterpret_cast<const char*>(c.data()), c.size());
    if (head.find("\r\n\r\n") != std::string::npos || head.size() > (1u << 20)) break;
  }
  if (auto end = head.find("\r\n\r\n"); end != std::string::npos) head.resize(end + 2);
  std::string_view rest = head;
  std::string value;
  bool in_from = false;
  while (!rest.empty()) {
    auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      if (in_from) value.append(line);
      continue;
    }
    if (in_from) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (iequals(name, "from")) {
      in_from = true;
      value.assign(line.substr(colon + 1));
    }
  }
  std::string_view v = value;
  if (auto lt = v.find('<'); lt != std::string_view::npos) {
    v.remove_prefix(lt + 1);
    v = v.substr(0, v.find('>'));
  } else {
    v = v.substr(0, v.find(','));
  }
  auto at = v.rfind('@');
  if (at == std::string_view::npos) return {};
  v.remove_prefix(at + 1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return lowercase(v);
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
