// RFC 8460 §4.4 report JSON, written by hand (field order as in the RFC), gzip through
// zlib's deflate with a gzip header (windowBits 15 + 16), and the §5.3 mail layout.
#include "sealrelay/tlsrpt/report.hh"

#include <zlib.h>

#include <cstdio>
#include <ctime>

#include "sealrelay/smtp/received.hh"
#include "sealrelay/util/json.hh"
#include "sealrelay/util/text.hh"

namespace sr::tlsrpt {
namespace {

void json_strings(std::string& o, const std::vector<std::string>& v) {
  o += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) o += ',';
    append_json_string(o, v[i]);
  }
  o += ']';
}

}  // namespace

std::string rfc3339(int64_t t) {
  std::time_t tt = std::time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string report_id(const report_meta& m, std::string_view domain) {
  std::string id = std::to_string(m.start_s);
  id += '.';
  id += domain;
  id += '@';
  id += m.submitter;
  return id;
}

std::string report_json(const report_meta& m, std::string_view domain, const domain_counts& counts) {
  std::string o;
  o.reserve(512);
  o += "{\"organization-name\":";
  append_json_string(o, m.organization);
  o += ",\"date-range\":{\"start-datetime\":";
  append_json_string(o, rfc3339(m.start_s));
  o += ",\"end-datetime\":";
  append_json_string(o, rfc3339(m.end_s > m.start_s ? m.end_s - 1 : m.start_s));
  o += "},\"contact-info\":";
  append_json_string(o, m.contact);
  o += ",\"report-id\":";
  append_json_string(o, report_id(m, domain));
  o += ",\"policies\":[";
  bool first = true;
  for (const auto& p : counts.policies) {
    if (!first) o += ',';
    first = false;
    o += "{\"policy\":{\"policy-type\":";
    append_json_string(o, to_string(p.type));
    if (!p.strings.empty()) {
      o += ",\"policy-string\":";
      json_strings(o, p.strings);
    }
    o += ",\"policy-domain\":";
    append_json_string(o, domain);
    if (!p.mx_host.empty()) {
      o += ",\"mx-host\":";
      json_strings(o, p.mx_host);
    }
    o += "},\"summary\":{\"total-successful-session-count\":";
    o += std::to_string(p.successes);
    o += ",\"total-failure-session-count\":";
    o += std::to_string(p.failures);
    o += "},\"failure-details\":[";
    for (size_t i = 0; i < p.details.size(); ++i) {
      const failure_detail& d = p.details[i];
      if (i) o += ',';
      o += "{\"result-type\":";
      append_json_string(o, report::to_string(d.type));
      if (!d.sending_ip.empty()) {
        o += ",\"sending-mta-ip\":";
        append_json_string(o, d.sending_ip);
      }
      if (!d.mx.empty()) {
        o += ",\"receiving-mx-hostname\":";
        append_json_string(o, d.mx);
      }
      if (!d.ip.empty()) {
        o += ",\"receiving-ip\":";
        append_json_string(o, d.ip);
      }
      o += ",\"failed-session-count\":";
      o += std::to_string(d.count);
      if (!d.info.empty()) {
        o += ",\"additional-information\":";
        append_json_string(o, d.info);
      }
      o += '}';
    }
    o += "]}";
  }
  o += "]}";
  return o;
}

result<std::string> gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return error{"gzip: deflateInit2 failed"};
  std::string out;
  out.resize(deflateBound(&zs, uLong(data.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = uInt(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  int rc = deflate(&zs, Z_FINISH);
  size_t n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return error{"gzip: deflate failed"};
  out.resize(n);
  return out;
}

result<std::string> gunzip(std::string_view data, size_t limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return error{"gunzip: inflateInit2 failed"};
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = uInt(data.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return error{"gunzip: not a valid gzip stream"};
    }
    out.append(buf, sizeof buf - zs.avail_out);
    if (out.size() > limit) {
      inflateEnd(&zs);
      return error{"gunzip: output over the limit"};
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return error{"gunzip: truncated"};
    }
  }
  inflateEnd(&zs);
  return out;
}

std::string attachment_name(const report_meta& m, std::string_view domain) {
  std::string n = m.submitter;
  n += '!';
  n += domain;
  n += '!';
  n += std::to_string(m.start_s);
  n += '!';
  n += std::to_string(m.end_s > m.start_s ? m.end_s - 1 : m.start_s);
  n += ".json.gz";
  return n;
}

std::string report_message(const report_meta& m, const mail_input& in) {
  const std::string id = report_id(m, in.domain);
  std::string boundary = "tlsrpt." + std::to_string(m.start_s) + "." + std::string(in.domain);
  std::string o;
  o.reserve(in.gz.size() * 4 / 3 + 2048);
  o += "From: <";
  o += in.from;
  o += ">\r\nDate: ";
  smtp::append_rfc5322_date(o, std::time_t(in.now_s));
  o += "\r\nTo: ";
  for (size_t i = 0; i < in.to.size(); ++i) {
    if (i) o += ",\r\n ";
    o += '<';
    o += in.to[i];
    o += '>';
  }
  o += "\r\nSubject: Report Domain: ";
  o += in.domain;
  o += "\r\n Submitter: ";
  o += m.submitter;
  o += "\r\n Report-ID: <";
  o += id;
  o += ">\r\nMessage-ID: <";
  o += id;
  o += ">\r\nTLS-Report-Domain: ";
  o += in.domain;
  o += "\r\nTLS-Report-Submitter: ";
  o += m.submitter;
  o += "\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n";
  o += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"";
  o += boundary;
  o += "\"\r\n\r\nThis is a multipart message in MIME format.\r\n\r\n--";
  o += boundary;
  o += "\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
  o += "This is an aggregate TLS report from ";
  o += m.submitter;
  o += " for ";
  o += in.domain;
  o += ",\r\n";
  o += rfc3339(m.start_s);
  o += " to ";
  o += rfc3339(m.end_s > m.start_s ? m.end_s - 1 : m.start_s);
  o += ".\r\n\r\n--";
  o += boundary;
  o += "\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n";
  o += "Content-Disposition: attachment;\r\n filename=\"";
  o += attachment_name(m, in.domain);
  o += "\"\r\n\r\n";
  append_base64_lines(o, in.gz);
  o += "\r\n--";
  o += boundary;
  o += "--\r\n";
  return o;
}

}  // namespace sr::tlsrpt
