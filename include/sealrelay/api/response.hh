// The HTTP injection API's response bodies (JSON, DESIGN §7): the 202 answer with the
// queue ids the spool gave, and the error answer {"error": ..., "field": ...} ("field" is
// null when the error concerns the whole request). Pure string building.
#pragma once
#include <span>
#include <string>

#include "sealrelay/api/request.hh"

namespace sr::api {

// Return the 202 body: {"queue_ids":["...", ...]}.
std::string accepted_body(std::span<const std::string> queue_ids);

// Return the error body: {"error":"...","field":"..."|null}.
std::string error_body(const api_error& e);

// Return the reason phrase of the statuses this API answers with ("Accepted", ...).
const char* reason_phrase(uint16_t status);

}  // namespace sr::api
