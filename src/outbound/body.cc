// Dot-stuffing by splitting iovecs: one memchr per line, no byte copied. The inserted dots
// and the terminators point into one static string, so the iovecs stay valid for as long
// as the caller's pieces do.
#include "sealrelay/outbound/body.hh"

#include <cstring>

namespace sr::outbound {

namespace {

// "\r\n.\r\n" and its suffixes "\n.\r\n", ".\r\n", and "." (the first byte of ".\r\n").
constexpr char k_term[] = "\r\n.\r\n";

void push(std::vector<iovec>& out, const char* p, size_t n) {
  out.push_back(iovec{const_cast<char*>(p), n});
}

}  // namespace

size_t stuff_window(std::span<const iovec> body, std::vector<iovec>& out, stuff_state& st) {
  size_t total = 0;
  for (const iovec& piece : body) {
    const char* p = static_cast<const char*>(piece.iov_base);
    size_t n = piece.iov_len;
    if (n == 0) continue;
    const char* seg = p;  // start of the run not yet pushed
    if (st.line_start && p[0] == '.') {
      push(out, k_term + 2, 1);
      ++total;
    }
    size_t i = 0;
    while (i < n) {
      const void* lf = std::memchr(p + i, '\n', n - i);
      if (!lf) break;
      size_t j = size_t(static_cast<const char*>(lf) - p) + 1;
      if (j < n && p[j] == '.') {
        push(out, seg, size_t(p + j - seg));
        push(out, k_term + 2, 1);
        total += 1;
        seg = p + j;  // the original '.' leads the next run
      }
      i = j;
    }
    push(out, seg, size_t(p + n - seg));
    total += n;
    st.seen += n;
    st.line_start = p[n - 1] == '\n';
    st.prev = n >= 2 ? p[n - 2] : st.last;
    st.last = p[n - 1];
  }
  return total;
}

size_t stuff_end(std::vector<iovec>& out, const stuff_state& st) {
  const char* term;
  if (st.seen == 0 || (st.last == '\n' && st.prev == '\r'))
    term = k_term + 2;
  else if (st.last == '\r')
    term = k_term + 1;
  else
    term = k_term;
  size_t tn = std::strlen(term);
  push(out, term, tn);
  return tn;
}

size_t stuff_body(std::span<const iovec> body, std::vector<iovec>& out) {
  stuff_state st;
  size_t total = stuff_window(body, out, st);
  return total + stuff_end(out, st);
}

}  // namespace sr::outbound
