// Cipher strength by name and version comparison. Names are split into upper-cased tokens
// on '_' and '-', so the IANA and the OpenSSL/wolfSSL spellings of one suite rate alike.
#include "floor.hh"

#include <array>

namespace sr::policy {

namespace {

constexpr size_t max_name = 128;
constexpr size_t max_tokens = 24;

// Split `name` into upper-case tokens (views into `buf`); false when it does not fit.
bool tokenize(std::string_view name, char (&buf)[max_name],
              std::array<std::string_view, max_tokens>& tokens, size_t& count) {
  if (name.size() > max_name) return false;
  count = 0;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    char c = i < name.size() ? name[i] : '_';
    if (c == '_' || c == '-') {
      if (i > start) {
        if (count == max_tokens) return false;
        tokens[count++] = std::string_view(buf + start, i - start);
      }
      start = i + 1;
      continue;
    }
    buf[i] = (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
  }
  return true;
}

template <size_t N>
bool any_of(std::string_view t, const std::string_view (&set)[N]) {
  for (std::string_view s : set)
    if (t == s) return true;
  return false;
}

// Bulk ciphers that must never carry mail: broken, no encryption, export-grade, or no
// authentication of the server at all (anonymous key exchange).
constexpr std::string_view refused[] = {"RC4",    "RC2",        "NULL",    "EXPORT", "EXP",
                                        "EXP1024", "EXPORT1024", "ANON",    "ADH",    "AECDH",
                                        "DES40",  "EXPORT40"};
// Triple DES: 168-bit key, 112 bits of strength (meet-in-the-middle).
constexpr std::string_view triple_des[] = {"3DES", "CBC3", "DES3", "EDE3", "DESEDE3"};

unsigned sized(std::string_view next) {
  if (next == "128") return 128;
  if (next == "256") return 256;
  return 0;
}

}  // namespace

unsigned classify_cipher(std::string_view name) {
  char buf[max_name];
  std::array<std::string_view, max_tokens> tok;
  size_t n = 0;
  if (name.empty() || !tokenize(name, buf, tok, n)) return 0;

  for (size_t i = 0; i < n; ++i)
    if (any_of(tok[i], refused)) return 0;
  for (size_t i = 0; i < n; ++i) {
    if (any_of(tok[i], triple_des)) return 112;
    if (tok[i] == "DES" && i + 1 < n && (tok[i + 1] == "EDE" || tok[i + 1] == "CBC3")) return 112;
  }
  for (size_t i = 0; i < n; ++i)
    if (tok[i] == "DES") return 0;  // single DES, 56 bits

  for (size_t i = 0; i < n; ++i) {
    std::string_view t = tok[i];
    std::string_view next = i + 1 < n ? tok[i + 1] : std::string_view();
    if (t == "CHACHA20") return 256;
    if (t == "AES" || t == "CAMELLIA" || t == "ARIA") {
      if (unsigned b = sized(next)) return b;
      continue;
    }
    if (t == "AES128" || t == "CAMELLIA128" || t == "ARIA128") return 128;
    if (t == "AES256" || t == "CAMELLIA256" || t == "ARIA256") return 256;
    if (t == "SEED" || t == "IDEA" || t == "SM4" || t == "HC128" || t == "RABBIT") return 128;
  }
  // Integrity-only suites (TLS_SHA256_SHA256, RFC 9150) land here too: not encrypted.
  return 0;
}

std::optional<config::tls_version> parse_tls_version(std::string_view text) {
  if (text.size() >= 4) {
    auto up = [](char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; };
    if (up(text[0]) == 'T' && up(text[1]) == 'L' && up(text[2]) == 'S' && up(text[3]) == 'V')
      text.remove_prefix(4);
    else if (up(text[0]) == 'S')
      return std::nullopt;  // SSLv2 / SSLv3
  }
  if (text == "1" || text == "1.0") return config::tls_version::v1_0;
  if (text == "1.1") return config::tls_version::v1_1;
  if (text == "1.2") return config::tls_version::v1_2;
  if (text == "1.3") return config::tls_version::v1_3;
  return std::nullopt;
}

bool version_meets(std::string_view version, config::tls_version floor) {
  auto v = parse_tls_version(version);
  return v && *v >= floor;
}

}  // namespace sr::policy
