// The portal's HTML sanitiser (sanitize.hh). Three steps:
//  1. bound_depth(): a cheap pre-scan that models the element stack and turns the `<` of
//     any start tag that would nest deeper than max_depth into `&lt;`. Gumbo has no depth
//     limit and its scope checks walk the stack per tag (quadratic on deep input), so this
//     keeps its stack short. The rewrite only ever escapes a `<`, so it can never create
//     markup; the model may be wrong about HTML, which costs looks, never safety.
//  2. gumbo parses into a heap we own (every block tracked, a byte budget and a deadline;
//     over either the parse is abandoned by longjmp, the HTML shown as escaped source, and
//     the heap freed as a list: gumbo's own destroy recurses on depth).
//  3. an iterative walk re-serialises only the allow-list below; everything else is
//     dropped with its content or unwrapped (children kept).
#include "sealrelay/fallback/sanitize.hh"

#include <gumbo.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

namespace sr::fallback {

namespace {

// --- characters and URLs ---------------------------------------------------------------

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != prefix[i]) return false;
  return true;
}

// Applies the URL parser's own clean-up (WHATWG URL: strip leading and trailing C0 controls
// and spaces, remove every tab and newline), so we judge the URL the browser will use.
std::string normalize_url(std::string_view v) {
  auto c0_or_space = [](char c) { return static_cast<unsigned char>(c) <= 0x20; };
  while (!v.empty() && c0_or_space(v.front())) v.remove_prefix(1);
  while (!v.empty() && c0_or_space(v.back())) v.remove_suffix(1);
  std::string out;
  out.reserve(v.size());
  for (char c : v)
    if (c != '\t' && c != '\n' && c != '\r') out += c;
  return out;
}

// Returns the lower-cased scheme of a normalised URL, or nothing for a relative one.
std::optional<std::string> scheme_of(std::string_view url) {
  if (url.empty() || !is_alpha(url[0])) return std::nullopt;
  std::string scheme;
  for (char c : url) {
    if (c == ':') return scheme;
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return std::nullopt;
    scheme += lower(c);
  }
  return std::nullopt;
}

// Returns the URL to write for a link, or nothing if it is not http, https or mailto.
// Relative links are refused too: inside the portal they would point at the portal.
std::optional<std::string> safe_link(std::string_view href) {
  std::string url = normalize_url(href);
  auto scheme = scheme_of(url);
  if (!scheme || (*scheme != "http" && *scheme != "https" && *scheme != "mailto"))
    return std::nullopt;
  return url;
}

// Returns the source to write for an image, or nothing unless it is inline (cid: or a
// base64 raster data: URL). Remote images (tracking pixels) and SVG never pass.
std::optional<std::string> inline_image(std::string_view src) {
  std::string url = normalize_url(src);
  if (iequals_prefix(url, "cid:")) return url.size() > 4 ? std::optional{url} : std::nullopt;
  for (std::string_view type : {"data:image/png;base64,", "data:image/gif;base64,",
                                "data:image/jpeg;base64,", "data:image/webp;base64,"}) {
    if (!iequals_prefix(url, type)) continue;
    std::string_view data = std::string_view{url}.substr(type.size());
    bool base64 = !data.empty() && std::all_of(data.begin(), data.end(), [](char c) {
      return is_alpha(c) || is_digit(c) || c == '+' || c == '/' || c == '=';
    });
    return base64 ? std::optional{url} : std::nullopt;
  }
  return std::nullopt;
}

void append_escaped(std::string& out, std::string_view text, bool attribute) {
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += attribute ? "&quot;" : "\""; break;
      case '\'': out += attribute ? "&#39;" : "'"; break;
      default: out += c;
    }
  }
}

// --- step 1: the depth pre-scan ----------------------------------------------------------

// FNV-1a of a lower-cased tag name: the model compares names, collisions only blur it.
uint64_t name_hash(std::string_view name) {
  uint64_t h = 14695981039346656037ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(lower(c))) * 1099511628211ull;
  return h;
}

bool one_of(std::string_view lname, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), lname) != names.end();
}

// Elements that never stay on the stack (void, or never nested by the tree builder).
bool never_pushed(std::string_view n) {
  return one_of(n, {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen",
                    "link", "meta", "param", "source", "track", "wbr", "html", "head", "body",
                    "p", "frame", "image", "isindex", "basefont", "bgsound"});
}

// Elements whose content is text up to their end tag.
bool raw_text(std::string_view n) {
  return one_of(n, {"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                    "noframes", "noscript"});
}

bool formatting(std::string_view n) {
  return one_of(n, {"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike",
                    "strong", "tt", "u"});
}

// Start tags that close an open element of the same family first (`<td>` after `<td>`),
// looking no further down than the container they belong to. Names are kept hashed: the
// scan runs per tag over the model's stack.
struct implicit_close {
  std::string_view tag;
  std::vector<uint64_t> closes;
  std::vector<uint64_t> stop_at;
  bool table_part;  // ignored outside a table, as the tree builder does
};
std::vector<implicit_close> make_implicit_closes() {
  auto h = [](std::initializer_list<std::string_view> names) {
    std::vector<uint64_t> v;
    for (auto n : names) v.push_back(name_hash(n));
    return v;
  };
  return {
      {"td", h({"td", "th"}), h({"tr", "table"}), true},
      {"th", h({"td", "th"}), h({"tr", "table"}), true},
      {"tr", h({"tr"}), h({"table"}), true},
      {"tbody", h({"tbody", "thead", "tfoot"}), h({"table"}), true},
      {"thead", h({"tbody", "thead", "tfoot"}), h({"table"}), true},
      {"tfoot", h({"tbody", "thead", "tfoot"}), h({"table"}), true},
      {"li", h({"li"}), h({"ul", "ol", "table"}), false},
      {"dt", h({"dt", "dd"}), h({"dl", "table"}), false},
      {"dd", h({"dt", "dd"}), h({"dl", "table"}), false},
  };
}
const std::vector<implicit_close> implicit_closes = make_implicit_closes();

// Elements an end tag does not close through (HTML's "in scope" boundaries).
const std::array<uint64_t, 7> scope_markers{
    name_hash("table"), name_hash("td"), name_hash("th"), name_hash("caption"),
    name_hash("object"), name_hash("applet"), name_hash("template")};

const std::array<uint64_t, 14> formatting_hashes{
    name_hash("a"), name_hash("b"), name_hash("big"), name_hash("code"), name_hash("em"),
    name_hash("font"), name_hash("i"), name_hash("nobr"), name_hash("s"), name_hash("small"),
    name_hash("strike"), name_hash("strong"), name_hash("tt"), name_hash("u")};

// The pre-scan's element stack: names (hashed) and the rules above.
class depth_model {
 public:
  size_t depth() const { return _stack.size(); }

  // Applies a start tag's implicit closes, then pushes it unless it never stays open. Table
  // parts outside any table are ignored, as the tree builder ignores them.
  void open(std::string_view lname) {
    for (const auto& rule : implicit_closes) {
      if (rule.tag != lname) continue;
      auto in = [](const std::vector<uint64_t>& set, uint64_t h) {
        return std::find(set.begin(), set.end(), h) != set.end();
      };
      bool found_stop = false;
      for (size_t k = _stack.size(); k-- > 0;) {
        if (in(rule.stop_at, _stack[k])) {
          found_stop = true;
          break;
        }
        if (in(rule.closes, _stack[k])) {
          pop_to(k);
          found_stop = true;
          break;
        }
      }
      if (rule.table_part && !found_stop) return;
    }
    if (!never_pushed(lname)) _stack.push_back(name_hash(lname));
  }

  // Closes the nearest open element of that name not behind a scope marker; a formatting
  // element leaves what is above it open (the adoption agency keeps those elements).
  void close(std::string_view lname) {
    uint64_t h = name_hash(lname);
    for (size_t k = _stack.size(); k-- > 0;) {
      if (_stack[k] == h) {
        if (formatting(lname))
          _stack.erase(_stack.begin() + static_cast<std::ptrdiff_t>(k));
        else
          pop_to(k);
        return;
      }
      if (std::find(scope_markers.begin(), scope_markers.end(), _stack[k]) !=
          scope_markers.end())
        return;
    }
  }

 private:
  // Pops _stack[k] and everything above it, except the formatting elements below the first
  // scope marker: the tree builder keeps those in its active list and reopens them at the
  // next text (sloppy `<div><font>x</div>` deepens the real tree too).
  void pop_to(size_t k) {
    size_t kept = k;
    for (size_t j = k; j < _stack.size(); ++j) {
      uint64_t h = _stack[j];
      if (std::find(scope_markers.begin(), scope_markers.end(), h) != scope_markers.end())
        break;
      if (std::find(formatting_hashes.begin(), formatting_hashes.end(), h) !=
          formatting_hashes.end())
        _stack[kept++] = h;
    }
    _stack.resize(kept);
  }

  std::vector<uint64_t> _stack;
};

// Returns the end of the tag whose name ends at `i` (one past its `>`), skipping quoted
// attribute values.
size_t tag_end(std::string_view s, size_t i) {
  char quote = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '>') {
      return i + 1;
    } else if ((c == '"' || c == '\'') && i > 0 && (s[i - 1] == '=' || s[i - 1] == ' ')) {
      quote = c;
    }
  }
  return s.size();
}

// Returns the position of `</name` (any case) at or after `from`, or the end.
size_t find_end_tag(std::string_view s, size_t from, std::string_view lname) {
  for (size_t i = s.find("</", from); i != std::string_view::npos; i = s.find("</", i + 2)) {
    if (iequals_prefix(s.substr(i + 2), lname)) return i;
  }
  return s.size();
}

// Returns `s` with the `<` of every start tag deeper than `max_depth` written as `&lt;`.
std::string bound_depth(std::string_view s, size_t max_depth) {
  std::string out;
  out.reserve(s.size());
  depth_model model;
  size_t copied = 0;  // s[0, copied) is in `out`
  size_t i = 0;
  std::string lname;
  auto read_name = [&](size_t at) {
    lname.clear();
    while (at < s.size() && (is_alpha(s[at]) || is_digit(s[at]) || s[at] == '-') &&
           lname.size() < 32)
      lname += lower(s[at++]);
    while (at < s.size() && (is_alpha(s[at]) || is_digit(s[at]) || s[at] == '-')) ++at;
    return at;
  };
  while ((i = s.find('<', i)) != std::string_view::npos && i + 1 < s.size()) {
    char c = s[i + 1];
    if (c == '!') {
      size_t end = s.compare(i, 4, "<!--") == 0 ? s.find("-->", i + 4) : s.find('>', i);
      i = end == std::string_view::npos ? s.size() : end + 1;
    } else if (c == '?') {
      size_t end = s.find('>', i);
      i = end == std::string_view::npos ? s.size() : end + 1;
    } else if (c == '/' && i + 2 < s.size() && is_alpha(s[i + 2])) {
      size_t after = read_name(i + 2);
      model.close(lname);
      i = tag_end(s, after);
    } else if (is_alpha(c)) {
      size_t after = read_name(i + 1);
      size_t end = tag_end(s, after);
      bool self_closing = end >= 2 && s[end - 2] == '/';
      if (lname == "plaintext") break;  // the rest is text
      if (raw_text(lname)) {
        i = find_end_tag(s, end, lname);
      } else if (self_closing || never_pushed(lname) || model.depth() < max_depth) {
        if (!self_closing) model.open(lname);
        i = end;
      } else {
        // Too deep: this `<` becomes text; what followed it is scanned as text.
        out.append(s.substr(copied, i - copied));
        out += "&lt;";
        copied = ++i;
      }
    } else {
      ++i;
    }
  }
  out.append(s.substr(copied));
  return out;
}

// --- step 2: gumbo on a tracked heap -----------------------------------------------------

// Every gumbo block sits behind this header on a doubly linked list, so the whole tree is
// freed without recursion and an abandoned parse leaks nothing.
struct alignas(16) block {
  block* prev;
  block* next;
  size_t size;
};

struct tracked_heap {
  block list{&list, &list, 0};
  size_t used = 0;
  size_t budget = 0;
  std::chrono::steady_clock::time_point deadline;
  unsigned until_clock = 1;  // allocations until the deadline is looked at again
  std::jmp_buf* escape = nullptr;

  tracked_heap() = default;
  tracked_heap(const tracked_heap&) = delete;
  tracked_heap& operator=(const tracked_heap&) = delete;
  ~tracked_heap() {
    for (block* b = list.next; b != &list;) {
      block* next = b->next;
      std::free(b);
      b = next;
    }
  }
};

void* heap_allocate(void* userdata, size_t size) {
  auto* heap = static_cast<tracked_heap*>(userdata);
  if (--heap->until_clock == 0) {
    heap->until_clock = 1024;  // the tree builder allocates at least once per token
    if (std::chrono::steady_clock::now() > heap->deadline) std::longjmp(*heap->escape, 1);
  }
  block* b = size <= heap->budget - heap->used
                 ? static_cast<block*>(std::malloc(sizeof(block) + size))
                 : nullptr;
  if (b == nullptr) std::longjmp(*heap->escape, 1);  // over budget or out of memory
  b->size = size;
  b->prev = &heap->list;
  b->next = heap->list.next;
  heap->list.next->prev = b;
  heap->list.next = b;
  heap->used += size;
  return b + 1;
}

void heap_deallocate(void* userdata, void* ptr) {
  if (ptr == nullptr) return;
  auto* heap = static_cast<tracked_heap*>(userdata);
  block* b = static_cast<block*>(ptr) - 1;
  b->prev->next = b->next;
  b->next->prev = b->prev;
  heap->used -= b->size;
  std::free(b);
}

// Parses with gumbo, or returns null if the parse went over the heap's budget or deadline. Only trivial
// objects live between setjmp and the longjmp (C frames and heap_allocate).
GumboOutput* parse_bounded(tracked_heap& heap, std::string_view html) {
  GumboOptions options = kGumboDefaultOptions;
  options.allocator = heap_allocate;
  options.deallocator = heap_deallocate;
  options.userdata = &heap;
  options.max_errors = 0;  // gumbo copies the open-element stack into every error
  std::jmp_buf escape;
  heap.escape = &escape;
  if (setjmp(escape) != 0) return nullptr;
  return gumbo_parse_with_options(&options, html.data(), html.size());
}

// --- step 3: the allow-list --------------------------------------------------------------

enum class action : uint8_t {
  keep,    // written with its allowed attributes
  unwrap,  // not written, its children are
  drop,    // neither it nor anything inside it
};

// Attributes without URLs, by bit; each kept element allows a set of them.
enum attr_bit : uint32_t {
  at_title = 1u << 0, at_alt = 1u << 1, at_width = 1u << 2, at_height = 1u << 3,
  at_align = 1u << 4, at_valign = 1u << 5, at_colspan = 1u << 6, at_rowspan = 1u << 7,
  at_border = 1u << 8, at_cellpadding = 1u << 9, at_cellspacing = 1u << 10,
  at_bgcolor = 1u << 11, at_color = 1u << 12, at_face = 1u << 13, at_size = 1u << 14,
  at_dir = 1u << 15, at_start = 1u << 16, at_type = 1u << 17,
};
struct attr_name {
  std::string_view name;
  attr_bit bit;
  bool free_text;  // title and alt: any text (escaped); the others: a short plain value
};
constexpr std::array<attr_name, 18> attr_names{{
    {"title", at_title, true}, {"alt", at_alt, true}, {"width", at_width, false},
    {"height", at_height, false}, {"align", at_align, false}, {"valign", at_valign, false},
    {"colspan", at_colspan, false}, {"rowspan", at_rowspan, false},
    {"border", at_border, false}, {"cellpadding", at_cellpadding, false},
    {"cellspacing", at_cellspacing, false}, {"bgcolor", at_bgcolor, false},
    {"color", at_color, false}, {"face", at_face, false}, {"size", at_size, false},
    {"dir", at_dir, false}, {"start", at_start, false}, {"type", at_type, false},
}};

struct element_rule {
  action what;
  uint32_t attrs;
};

constexpr uint32_t at_common = at_title | at_dir;
constexpr uint32_t at_block = at_common | at_align;
constexpr uint32_t at_cell = at_common | at_align | at_valign | at_width | at_height |
                             at_colspan | at_rowspan | at_bgcolor;

element_rule rule_of(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_H1: case GUMBO_TAG_H2:
    case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6:
    case GUMBO_TAG_CENTER:
      return {action::keep, at_block};
    case GUMBO_TAG_BR: case GUMBO_TAG_SPAN: case GUMBO_TAG_B: case GUMBO_TAG_STRONG:
    case GUMBO_TAG_I: case GUMBO_TAG_EM: case GUMBO_TAG_U: case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_PRE: case GUMBO_TAG_CODE: case GUMBO_TAG_SMALL: case GUMBO_TAG_BIG:
    case GUMBO_TAG_SUB: case GUMBO_TAG_SUP: case GUMBO_TAG_THEAD: case GUMBO_TAG_TBODY:
      return {action::keep, at_common};
    case GUMBO_TAG_UL: return {action::keep, at_common | at_type};
    case GUMBO_TAG_OL: return {action::keep, at_common | at_type | at_start};
    case GUMBO_TAG_LI: return {action::keep, at_common | at_type};
    case GUMBO_TAG_A: return {action::keep, at_title};  // href is checked on its own
    case GUMBO_TAG_IMG:  // src is checked on its own
      return {action::keep, at_title | at_alt | at_width | at_height | at_align | at_border};
    case GUMBO_TAG_HR: return {action::keep, at_common | at_align | at_width | at_size};
    case GUMBO_TAG_TABLE:
      return {action::keep, at_block | at_width | at_height | at_border | at_cellpadding |
                                at_cellspacing | at_bgcolor};
    case GUMBO_TAG_TR: return {action::keep, at_common | at_align | at_valign | at_bgcolor};
    case GUMBO_TAG_TD: case GUMBO_TAG_TH: return {action::keep, at_cell};
    case GUMBO_TAG_FONT: return {action::keep, at_common | at_color | at_face | at_size};
    // Active content, styles, document plumbing, forms and media: gone with their content.
    case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_IFRAME: case GUMBO_TAG_OBJECT:
    case GUMBO_TAG_EMBED: case GUMBO_TAG_FORM: case GUMBO_TAG_INPUT: case GUMBO_TAG_BUTTON:
    case GUMBO_TAG_LINK: case GUMBO_TAG_META: case GUMBO_TAG_BASE: case GUMBO_TAG_SVG:
    case GUMBO_TAG_MATH: case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_TITLE:
    case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_NOEMBED: case GUMBO_TAG_NOFRAMES:
    case GUMBO_TAG_FRAMESET: case GUMBO_TAG_FRAME: case GUMBO_TAG_APPLET:
    case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_SELECT: case GUMBO_TAG_OPTION:
    case GUMBO_TAG_OPTGROUP: case GUMBO_TAG_DATALIST: case GUMBO_TAG_KEYGEN:
    case GUMBO_TAG_ISINDEX: case GUMBO_TAG_AUDIO: case GUMBO_TAG_VIDEO: case GUMBO_TAG_CANVAS:
    case GUMBO_TAG_PARAM: case GUMBO_TAG_SOURCE: case GUMBO_TAG_TRACK: case GUMBO_TAG_BGSOUND:
    case GUMBO_TAG_IMAGE: case GUMBO_TAG_AREA: case GUMBO_TAG_MAP:
      return {action::drop, 0};
    default:
      return {action::unwrap, 0};  // html, head, body and anything unknown: children only
  }
}

// A presentational value: short, letters, digits and a little punctuation (no URLs).
bool plain_value(std::string_view v) {
  return v.size() <= 64 && std::all_of(v.begin(), v.end(), [](char c) {
           return is_alpha(c) || is_digit(c) || c == '#' || c == '%' || c == '.' || c == ',' ||
                  c == '-' || c == ' ';
         });
}

const GumboAttribute* find_attr(const GumboElement& e, std::string_view name) {
  for (unsigned i = 0; i < e.attributes.length; ++i) {
    auto* a = static_cast<const GumboAttribute*>(e.attributes.data[i]);
    if (name == a->name) return a;
  }
  return nullptr;
}

void append_attr(std::string& out, std::string_view name, std::string_view value) {
  out += ' ';
  out += name;
  out += "=\"";
  append_escaped(out, value, true);
  out += '"';
}

// Writes the start tag of a kept element; returns false if it must not be kept after all
// (an image without an inline source, a link without a safe target: unwrapped).
bool write_start_tag(std::string& out, const GumboElement& e, uint32_t allowed) {
  std::string_view tag = gumbo_normalized_tagname(e.tag);
  std::string first;  // src or href, checked
  if (e.tag == GUMBO_TAG_IMG) {
    const GumboAttribute* src = find_attr(e, "src");
    auto ok = src ? inline_image(src->value) : std::nullopt;
    if (!ok) return false;
    first = std::move(*ok);
  } else if (e.tag == GUMBO_TAG_A) {
    const GumboAttribute* href = find_attr(e, "href");
    auto ok = href ? safe_link(href->value) : std::nullopt;
    if (!ok) return false;
    first = std::move(*ok);
  }
  out += '<';
  out += tag;
  if (e.tag == GUMBO_TAG_IMG) append_attr(out, "src", first);
  if (e.tag == GUMBO_TAG_A) append_attr(out, "href", first);
  for (const attr_name& an : attr_names) {
    if (!(allowed & an.bit)) continue;
    const GumboAttribute* a = find_attr(e, an.name);
    if (a && (an.free_text || plain_value(a->value))) append_attr(out, an.name, a->value);
  }
  if (e.tag == GUMBO_TAG_A) out += " rel=\"noopener noreferrer\" target=\"_blank\"";
  out += '>';
  return true;
}

bool is_void(GumboTag tag) {
  return tag == GUMBO_TAG_BR || tag == GUMBO_TAG_HR || tag == GUMBO_TAG_IMG;
}

// Writes the allowed part of the tree, iteratively (no recursion on the input's depth).
std::string serialise(const GumboNode* root, size_t max_depth) {
  struct frame {
    const GumboVector* children;
    unsigned next;
    std::string_view close;  // end tag to write when done, empty if unwrapped
  };
  std::string out;
  std::vector<frame> stack;
  stack.push_back({&root->v.document.children, 0, {}});
  size_t open = 0;
  while (!stack.empty()) {
    frame& f = stack.back();
    if (f.next == f.children->length) {
      if (!f.close.empty()) {
        out += "</";
        out += f.close;
        out += '>';
        --open;
      }
      stack.pop_back();
      continue;
    }
    auto* node = static_cast<const GumboNode*>(f.children->data[f.next++]);
    switch (node->type) {
      case GUMBO_NODE_TEXT:
      case GUMBO_NODE_WHITESPACE:
      case GUMBO_NODE_CDATA:
        append_escaped(out, node->v.text.text, false);
        break;
      case GUMBO_NODE_ELEMENT: {
        const GumboElement& e = node->v.element;
        if (e.tag_namespace != GUMBO_NAMESPACE_HTML) break;  // SVG, MathML: dropped
        element_rule rule = rule_of(e.tag);
        if (rule.what == action::drop) break;
        bool kept = rule.what == action::keep && open < max_depth &&
                    write_start_tag(out, e, rule.attrs);
        if (is_void(e.tag)) break;
        std::string_view close = kept ? gumbo_normalized_tagname(e.tag) : std::string_view{};
        if (kept) ++open;
        stack.push_back({&e.children, 0, close});  // `f` is not used after this
        break;
      }
      default:  // comments, templates, documents
        break;
    }
  }
  return out;
}

}  // namespace

bool is_safe_link(std::string_view href) { return safe_link(href).has_value(); }

bool is_inline_image(std::string_view src) { return inline_image(src).has_value(); }

std::string sanitize_html(std::string_view html, const sanitize_limits& limits) {
  html = html.substr(0, limits.max_input);
  std::string bounded = bound_depth(html, limits.max_depth);
  tracked_heap heap;
  heap.budget = limits.parser_memory + limits.parser_memory_per_byte * bounded.size();
  heap.deadline = std::chrono::steady_clock::now() + limits.max_parse_time;
  GumboOutput* output = parse_bounded(heap, bounded);
  if (output == nullptr) {
    // Too costly to parse: show the source as text rather than nothing.
    std::string out = "<pre>";
    append_escaped(out, html, false);
    out += "</pre>";
    return out;
  }
  return serialise(output->document, limits.max_depth);
  // `heap` frees the tree, gumbo_destroy_output would recurse on its depth
}

}  // namespace sr::fallback
