// The effective config back as TOML (`sealrelay --check-config -v`), in DESIGN.md §4 order,
// with every default written out. parse(dump(c)) yields the same config again.
#include <cstdio>

#include "sealrelay/config/config.hh"
#include "not_built.hh"

namespace sr::config {

namespace {
// Comment out a key whose feature is not built (it is refused when written), unless the
// file wrote it (parsed with not_built_mode::accept): the dump of a valid file stays valid.
void not_built_key(std::string& o, const config& c, std::string_view key) {
  for (const not_built_value& nb : not_built_values)
    if (nb.key == key && nb.value == "*" && !c.line_of(std::string(key))) {
      o += "# ";
      return;
    }
}
}  // namespace


const char* to_string(listen_mode m) {
  switch (m) {
    case listen_mode::relay: return "relay";
    case listen_mode::submission: return "submission";
  }
  return "?";
}

const char* to_string(listen_tls t) {
  switch (t) {
    case listen_tls::none: return "none";
    case listen_tls::starttls: return "starttls";
    case listen_tls::implicit: return "implicit";
  }
  return "?";
}

const char* to_string(tls_policy p) {
  switch (p) {
    case tls_policy::opportunistic: return "opportunistic";
    case tls_policy::forced: return "forced";
    case tls_policy::exclusive: return "exclusive";
  }
  return "?";
}

const char* to_string(verify_mode v) {
  switch (v) {
    case verify_mode::none: return "none";
    case verify_mode::ca: return "ca";
    case verify_mode::dane: return "dane";
  }
  return "?";
}

const char* to_string(tls_version v) {
  switch (v) {
    case tls_version::v1_0: return "1.0";
    case tls_version::v1_1: return "1.1";
    case tls_version::v1_2: return "1.2";
    case tls_version::v1_3: return "1.3";
  }
  return "?";
}

const char* to_string(dkim_algorithm a) {
  switch (a) {
    case dkim_algorithm::rsa_sha256: return "rsa-sha256";
    case dkim_algorithm::ed25519_sha256: return "ed25519-sha256";
  }
  return "?";
}

const char* to_string(pool_selection s) {
  switch (s) {
    case pool_selection::round_robin: return "round-robin";
    case pool_selection::weighted: return "weighted";
  }
  return "?";
}

namespace {

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string q(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string q(duration d) { return q(format_duration(d)); }

template <typename T, typename F>
std::string list(const std::vector<T>& v, F&& each) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + each(v[i]);
  return out + "]";
}

void kv(std::string& out, const char* key, const std::string& value) {
  out += key;
  out += " = ";
  out += value;
  out += '\n';
}

std::string b(bool v) { return v ? "true" : "false"; }
std::string n(uint64_t v) { return std::to_string(v); }

}  // namespace

std::string dump(const config& c) {
  std::string o = "# effective configuration of " + c.source_file + "\n\n[server]\n";
  kv(o, "hostname", q(c.server.hostname));
  kv(o, "shards", n(c.server.shards));
  kv(o, "state_dir", q(c.server.state_dir));
  kv(o, "drain_timeout", q(c.server.drain_timeout));

  o += "\n[tls]\n";
  kv(o, "cert_file", q(c.tls.cert_file));
  kv(o, "key_file", q(c.tls.key_file));
  kv(o, "ca_file", q(c.tls.ca_file));
  kv(o, "min_version", q(to_string(c.tls.min_version)));
  kv(o, "min_cipher_bits", n(c.tls.min_cipher_bits));

  for (const auto& l : c.listen) {
    o += "\n[[listen]]\n";
    kv(o, "address", q(l.address));
    kv(o, "mode", q(to_string(l.mode)));
    kv(o, "tls", q(to_string(l.tls)));
    kv(o, "require_tls", b(l.require_tls));
    if (l.mode == listen_mode::relay)  // parse() rejects it on submission listeners
      kv(o, "allow_relay_from", list(l.allow_relay_from, [](const cidr& x) { return q(x.to_string()); }));
  }

  o += "\n[limits]\n";
  kv(o, "max_message_size", n(c.limits.max_message_size));
  kv(o, "max_recipients", n(c.limits.max_recipients));
  kv(o, "max_errors", n(c.limits.max_errors));
  kv(o, "max_junk_commands", n(c.limits.max_junk_commands));
  kv(o, "max_conns_per_ip", n(c.limits.max_conns_per_ip));
  kv(o, "max_connections", n(c.limits.max_connections));
  kv(o, "idle_timeout", q(c.limits.idle_timeout));
  kv(o, "command_timeout", q(c.limits.command_timeout));
  kv(o, "data_timeout", q(c.limits.data_timeout));
  kv(o, "commit_interval", q(c.limits.commit_interval));

  o += "\n[auth]\n";
  // Written only when the file wrote it: check_files() reads a users file that was named.
  if (!c.line_of("auth.users_file")) o += "# ";
  kv(o, "users_file", q(c.auth.users_file));
  kv(o, "max_failures", n(c.auth.max_failures));
  kv(o, "failure_delay", q(c.auth.failure_delay));
  kv(o, "authenticated_header", b(c.auth.authenticated_header));

  o += "\n[http]\n";
  kv(o, "listen", q(c.http.listen));
  kv(o, "tls", b(c.http.tls));
  kv(o, "tokens_file", q(c.http.tokens_file));

  o += "\n[dns]\n";
  kv(o, "resolvers", list(c.dns.resolvers, [](const std::string& s) { return q(s); }));

  o += "\n[outbound]\n";
  kv(o, "smtp_port", n(c.outbound.smtp_port));
  kv(o, "default_policy", q(to_string(c.outbound.default_policy)));
  kv(o, "connect_timeout", q(c.outbound.connect_timeout));
  kv(o, "max_conns_per_domain", n(c.outbound.max_conns_per_domain));
  kv(o, "messages_per_conn", n(c.outbound.messages_per_conn));
  kv(o, "retry", list(c.outbound.retry, [](duration d) { return q(d); }));
  kv(o, "max_queue_age", q(c.outbound.max_queue_age));
  kv(o, "backoff_defaults", b(c.outbound.backoff_defaults));

  for (const auto& r : c.routes) {
    o += "\n[[route]]\n";
    kv(o, "domain", q(r.domain));
    kv(o, "next_hop", q(r.next_hop));
  }

  o += "\n[mta_sts]\n";
  kv(o, "enabled", b(c.mta_sts.enabled));
  kv(o, "https_port", n(c.mta_sts.https_port));

  o += "\n[dane]\n";
  kv(o, "enabled", b(c.dane.enabled));

  o += "\n[tlsrpt]\n";
  kv(o, "enabled", b(c.tlsrpt.enabled));
  kv(o, "organization", q(c.tlsrpt.organization));
  kv(o, "contact", q(c.tlsrpt.contact));
  kv(o, "from", q(c.tlsrpt.from));
  kv(o, "interval", q(c.tlsrpt.interval));

  o += "\n[suppression]\n";
  kv(o, "enabled", b(c.suppression.enabled));
  kv(o, "action", q(c.suppression.action == suppression_action::drop ? "drop" : "refuse"));

  for (size_t i = 0; i < c.policies.size(); ++i) {
    const policy_entry& p = c.policies[i];
    o += "\n[[policy]]\n";
    kv(o, "domain", q(p.domain));
    kv(o, "tls", q(to_string(p.tls)));
    // Keys that belong to other policy kinds are left out: parse() would reject them.
    if (p.tls != tls_policy::opportunistic) {
      kv(o, "verify", q(to_string(p.verify)));
      if (p.tls == tls_policy::forced) {
        // The default chain names methods the loader refuses when written (not_built.hh):
        // shown, as a comment, when the file left it unset.
        if (!c.line_of("policy[" + std::to_string(i) + "].fallback")) o += "# ";
        kv(o, "fallback", list(p.fallback, [](const std::string& s) { return q(s); }));
      }
      kv(o, "fallback_after", q(p.fallback_after));
    }
    if (p.tls == tls_policy::exclusive) kv(o, "notify_sender", b(p.notify_sender));
    kv(o, "min_version", q(to_string(p.min_version)));
    kv(o, "min_cipher_bits", n(p.min_cipher_bits));
    if (!p.pool.empty()) kv(o, "pool", q(p.pool));
  }

  for (const auto& p : c.pools) {
    o += "\n[[pool]]\n";
    kv(o, "name", q(p.name));
    kv(o, "selection", q(to_string(p.selection)));
    // An address with its own weight or EHLO name is written as an inline table.
    kv(o, "addresses", list(p.addresses, [&](const pool_address& a) {
         if (a.ehlo.empty() && (a.weight == 1 || p.selection != pool_selection::weighted)) return q(a.address);
         std::string t = "{address = " + q(a.address);
         if (p.selection == pool_selection::weighted) t += ", weight = " + n(a.weight);
         if (!a.ehlo.empty()) t += ", ehlo = " + q(a.ehlo);
         return t + "}";
       }));
    if (!p.ehlo.empty()) kv(o, "ehlo", q(p.ehlo));
    kv(o, "senders", list(p.senders, [](const std::string& s) { return q(s); }));
  }

  for (size_t i = 0; i < c.shaping.size(); ++i) {
    const shaping_entry& e = c.shaping[i];
    o += "\n[[shaping]]\n";
    // A default name ("*.google.com") is no valid name to write: it follows from the match.
    if (!c.line_of("shaping[" + std::to_string(i) + "].name")) o += "# ";
    kv(o, "name", q(e.name));
    if (!e.domain.empty()) kv(o, "domain", q(e.domain));
    else kv(o, "mx", q(e.mx.starts_with(".") ? "*" + e.mx : e.mx));
    // Unset limits are the [outbound] ones: written as comments with the value in force.
    if (!e.max_connections) o += "# ";
    kv(o, "max_connections", n(e.max_connections ? e.max_connections : c.outbound.max_conns_per_domain));
    if (!e.max_messages_per_conn) o += "# ";
    kv(o, "max_messages_per_conn", n(e.max_messages_per_conn ? e.max_messages_per_conn : c.outbound.messages_per_conn));
    if (e.max_message_rate.limited()) kv(o, "max_message_rate", q(format_rate(e.max_message_rate)));
    if (e.max_connection_rate.limited()) kv(o, "max_connection_rate", q(format_rate(e.max_connection_rate)));
    if (e.retry.empty()) o += "# ";
    kv(o, "retry", list(e.retry.empty() ? c.outbound.retry : e.retry, [](duration d) { return q(d); }));
    if (!e.pool.empty()) kv(o, "pool", q(e.pool));
  }

  for (const auto& r : c.backoff) {
    o += "\n[[backoff]]\n";
    kv(o, "match", q(r.match));
    char f[32];
    std::snprintf(f, sizeof f, "%.10g", r.factor);
    kv(o, "factor", std::string(f).find_first_of(".e") == std::string::npos ? std::string(f) + ".0" : f);
    kv(o, "duration", q(r.lasts));
  }

  for (const auto& d : c.dkim) {
    o += "\n[[dkim]]\n";
    kv(o, "domain", q(d.domain));
    kv(o, "selector", q(d.selector));
    kv(o, "key_file", q(d.key_file));
    kv(o, "algorithm", q(to_string(d.algorithm)));
    if (!d.headers.empty()) kv(o, "headers", list(d.headers, [](const std::string& s) { return q(s); }));
  }

  o += "\n[fallback]\n";
  kv(o, "spawn", b(c.fallback.spawn));
  kv(o, "socket", q(c.fallback.socket));
  kv(o, "store", q(c.fallback.store));
  kv(o, "portal_listen", q(c.fallback.portal_listen));
  kv(o, "portal_url", q(c.fallback.portal_url));
  kv(o, "escrow_expiry", q(c.fallback.escrow_expiry));
  kv(o, "pgp_home", q(c.fallback.pgp_home));
  kv(o, "smime_dir", q(c.fallback.smime_dir));

  o += "\n[spool]\n";
  kv(o, "encrypt", b(c.spool.encrypt));
  // Written only when set: an empty key_file is refused ("leave it out for no key").
  if (!c.spool.key_file.empty()) kv(o, "key_file", q(c.spool.key_file));
  kv(o, "previous_keys", list(c.spool.previous_keys, [](const std::string& s) { return q(s); }));

  o += "\n[audit]\n";
  kv(o, "file", q(c.audit.file));

  o += "\n[admin]\n";
  kv(o, "listen", q(c.admin.listen));
  return o;
}

}  // namespace sr::config
