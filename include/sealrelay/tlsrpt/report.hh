// The TLS-RPT report (RFC 8460 §4): the aggregate JSON for one policy domain and one
// window, its gzip form (zlib), and the two ways it travels: the RFC 8460 §5.3 mail
// (multipart/report; report-type=tlsrpt, the gzip as a base64 application/tlsrpt+gzip
// attachment) and the HTTPS POST body. Pure: no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tlsrpt/collector.hh"
#include "sealrelay/util/result.hh"

namespace sr::tlsrpt {

struct report_meta {
  std::string organization;  // organization-name
  std::string contact;       // contact-info
  std::string submitter;     // the submitting domain (our server.hostname)
  int64_t start_s = 0;       // window start, UNIX seconds (inclusive)
  int64_t end_s = 0;         // window end, UNIX seconds (exclusive)
};

// Return the report-id of `domain`'s report for the window (the same on a resend, so a
// receiver can drop a duplicate): "<start>.<domain>@<submitter>".
std::string report_id(const report_meta& m, std::string_view domain);
// Return the report JSON (RFC 8460 §4.4 field names; end-datetime is the last second of
// the window, as in the RFC's example).
std::string report_json(const report_meta& m, std::string_view domain, const domain_counts& counts);
// Return RFC 3339 UTC "2026-12-06T00:00:00Z" of UNIX seconds `t`.
std::string rfc3339(int64_t t);

// Compress `data` as a gzip member (RFC 1952); an error only on a zlib failure.
result<std::string> gzip(std::string_view data);
// Decompress a gzip member, refusing more than `limit` bytes of output.
result<std::string> gunzip(std::string_view data, size_t limit = 64u << 20);

// Return the attachment name "<submitter>!<domain>!<begin>!<end>.json.gz" (RFC 8460 §5.3).
std::string attachment_name(const report_meta& m, std::string_view domain);

struct mail_input {
  std::string_view from;                 // header From: and envelope sender
  std::vector<std::string> to;           // the mailto: addresses
  std::string_view domain;               // TLS-Report-Domain
  int64_t now_s = 0;                     // Date:
  std::string_view gz;                   // the gzip report
};
// Return the whole report message (CRLF line ends).
std::string report_message(const report_meta& m, const mail_input& in);

}  // namespace sr::tlsrpt
