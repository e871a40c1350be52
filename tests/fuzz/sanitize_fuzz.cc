// libFuzzer target: the escrow portal's HTML sanitiser (fallback/sanitize.hh) on any bytes.
// Invariants: it never crashes or hangs; and what a browser would build from its output
// (gumbo parses the output again) holds only allow-listed HTML elements and attributes,
// links that pass is_safe_link, images whose source passes is_inline_image, no comments.
#include <gumbo.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/fallback/sanitize.hh"

namespace {

bool allowed_element(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_HTML: case GUMBO_TAG_HEAD: case GUMBO_TAG_BODY:  // the reparse adds these
    case GUMBO_TAG_P: case GUMBO_TAG_BR: case GUMBO_TAG_DIV: case GUMBO_TAG_SPAN:
    case GUMBO_TAG_A: case GUMBO_TAG_B: case GUMBO_TAG_STRONG: case GUMBO_TAG_I:
    case GUMBO_TAG_EM: case GUMBO_TAG_U: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
    case GUMBO_TAG_LI: case GUMBO_TAG_TABLE: case GUMBO_TAG_THEAD: case GUMBO_TAG_TBODY:
    case GUMBO_TAG_TR: case GUMBO_TAG_TD: case GUMBO_TAG_TH: case GUMBO_TAG_H1:
    case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5:
    case GUMBO_TAG_H6: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_PRE: case GUMBO_TAG_CODE:
    case GUMBO_TAG_HR: case GUMBO_TAG_IMG: case GUMBO_TAG_FONT: case GUMBO_TAG_CENTER:
    case GUMBO_TAG_SMALL: case GUMBO_TAG_BIG: case GUMBO_TAG_SUB: case GUMBO_TAG_SUP:
      return true;
    default:
      return false;
  }
}

bool allowed_attribute(std::string_view name) {
  for (std::string_view a : {"title", "alt", "width", "height", "align", "valign", "colspan",
                             "rowspan", "border", "cellpadding", "cellspacing", "bgcolor",
                             "color", "face", "size", "dir", "start", "type", "href", "src",
                             "rel", "target"})
    if (name == a) return true;
  return false;
}

void check_element(const GumboElement& e) {
  CHECK(e.tag_namespace == GUMBO_NAMESPACE_HTML);
  CHECK(allowed_element(e.tag));
  for (unsigned i = 0; i < e.attributes.length; ++i) {
    auto* a = static_cast<const GumboAttribute*>(e.attributes.data[i]);
    std::string_view name = a->name;
    CHECK(allowed_attribute(name));
    if (name == "href") CHECK(e.tag == GUMBO_TAG_A && sr::fallback::is_safe_link(a->value));
    if (name == "src") CHECK(e.tag == GUMBO_TAG_IMG && sr::fallback::is_inline_image(a->value));
    if (name == "target") CHECK(std::string_view{a->value} == "_blank");
  }
  if (e.tag == GUMBO_TAG_IMG) {
    bool has_src = false;
    for (unsigned i = 0; i < e.attributes.length; ++i)
      has_src |= std::string_view{static_cast<const GumboAttribute*>(e.attributes.data[i])->name} == "src";
    CHECK(has_src);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 64 * 1024) return -1;
  sr::fallback::sanitize_limits limits;
  limits.max_depth = 4 + bytes[0];  // small depths too, so the cut is exercised
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  std::string out = sr::fallback::sanitize_html(in, limits);

  GumboOutput* parsed = gumbo_parse_with_options(&kGumboDefaultOptions, out.data(), out.size());
  std::vector<const GumboNode*> todo{parsed->document};
  while (!todo.empty()) {
    const GumboNode* n = todo.back();
    todo.pop_back();
    CHECK(n->type != GUMBO_NODE_COMMENT && n->type != GUMBO_NODE_TEMPLATE);
    const GumboVector* children = nullptr;
    if (n->type == GUMBO_NODE_DOCUMENT) {
      children = &n->v.document.children;
    } else if (n->type == GUMBO_NODE_ELEMENT) {
      check_element(n->v.element);
      children = &n->v.element.children;
    }
    if (children)
      for (unsigned i = 0; i < children->length; ++i)
        todo.push_back(static_cast<const GumboNode*>(children->data[i]));
  }
  gumbo_destroy_output(&kGumboDefaultOptions, parsed);
  return 0;
}
