// JSON bodies of the injection API's answers, written with the project's one JSON string
// escaper (util/json.hh) so they escape exactly as the audit log does.
#include "sealrelay/api/response.hh"

#include "sealrelay/util/json.hh"

namespace sr::api {

std::string accepted_body(std::span<const std::string> queue_ids) {
  std::string out = "{\"queue_ids\":[";
  for (std::size_t i = 0; i < queue_ids.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, queue_ids[i]);
  }
  out += "]}";
  return out;
}

std::string error_body(const api_error& e) {
  std::string out = "{\"error\":";
  append_json_string(out, e.error);
  out += ",\"field\":";
  if (e.field.empty())
    out += "null";
  else
    append_json_string(out, e.field);
  out += "}";
  return out;
}

const char* reason_phrase(uint16_t status) {
  switch (status) {
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    default: return "Error";
  }
}

}  // namespace sr::api
