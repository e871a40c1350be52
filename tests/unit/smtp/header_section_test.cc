// smtp::header_section: the header section collected from body pieces however they are
// split, fields unfolded, the cap, and mailbox_addresses on the From: forms clients send.
#include "sealrelay/smtp/header_section.hh"

#include <gtest/gtest.h>

#include <string>

namespace sr::smtp {
namespace {

void feed(header_section& h, std::string_view s) {
  h.feed({reinterpret_cast<const std::byte*>(s.data()), s.size()});
}

const std::string msg =
    "From: \"Smith, Ann\" <ann@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: a long\r\n"
    " folded\tsubject\r\n"
    "TLS-Required: No\r\n"
    "Message-ID: <x1@example.org>\r\n"
    "\r\n"
    "Body line\r\nFrom: not-a-header@evil.example\r\n";

TEST(HeaderSection, FieldsFromOnePiece) {
  header_section h;
  feed(h, msg);
  EXPECT_TRUE(h.complete());
  EXPECT_EQ(h.field("from"), "\"Smith, Ann\" <ann@example.org>");
  EXPECT_EQ(h.field("SUBJECT"), "a long folded\tsubject");
  EXPECT_EQ(h.field("tls-required"), "No");
  EXPECT_EQ(h.count("from"), 1u);  // the body's "From:" line is not a field
  EXPECT_FALSE(h.field("cc"));
  EXPECT_TRUE(h.text().ends_with("Message-ID: <x1@example.org>\r\n"));
}

TEST(HeaderSection, EveryByteSplitGivesTheSameSection) {
  header_section whole;
  feed(whole, msg);
  for (size_t split = 1; split < msg.size(); ++split) {
    header_section h;
    feed(h, std::string_view(msg).substr(0, split));
    feed(h, std::string_view(msg).substr(split));
    ASSERT_TRUE(h.complete()) << split;
    ASSERT_EQ(h.text(), whole.text()) << split;
  }
  header_section bytewise;
  for (char c : msg) feed(bytewise, std::string_view(&c, 1));
  EXPECT_EQ(bytewise.text(), whole.text());
}

// Only the header section is copied: a body sharing the piece is left alone.
TEST(HeaderSection, BodyInTheSamePieceIsNotKept) {
  header_section h(64);
  feed(h, "From: a@b.example\r\n\r\n" + std::string(100000, 'x') + "\r\n");
  EXPECT_TRUE(h.complete());
  EXPECT_FALSE(h.truncated());
  EXPECT_EQ(h.text(), "From: a@b.example\r\n");
}

TEST(HeaderSection, NoFieldsAndUnterminated) {
  header_section h;
  feed(h, "\r\nbody\r\n");
  EXPECT_TRUE(h.complete());
  EXPECT_EQ(h.text(), "");
  h.clear();
  feed(h, "Subject: only headers\r\nFrom: a@b.example\r\n");
  EXPECT_FALSE(h.complete());
  EXPECT_EQ(h.field("from"), "a@b.example");
}

TEST(HeaderSection, CapStopsCollecting) {
  header_section h(64);
  feed(h, "Subject: " + std::string(40, 'x') + "\r\nFrom: late@example.org\r\n\r\n");
  EXPECT_TRUE(h.truncated());
  EXPECT_FALSE(h.complete());
  EXPECT_TRUE(h.field("subject"));
  EXPECT_FALSE(h.field("from"));  // past the cap: not seen
}

// Found by tests/fuzz/headers_fuzz: a piece whose last CRLF straddles the cap kept none of
// the complete lines before it, while the same bytes in two pieces kept them.
TEST(HeaderSection, LinesBeforeTheCapKeptWhenOnePieceRunsPastIt) {
  const std::string text = "A: b\r\nC: yyyyyy\r\nD: e\r\n\r\n";  // 2nd CRLF at 15-16
  header_section whole(16), split(16);
  feed(whole, text);
  feed(split, text.substr(0, 7));
  feed(split, text.substr(7));
  EXPECT_TRUE(whole.truncated());
  EXPECT_EQ(whole.text(), "A: b\r\n");
  EXPECT_EQ(whole.text(), split.text());
  EXPECT_EQ(whole.field("a"), "b");
}

// The record meta inbound SMTP and the HTTP API take from the header section.
TEST(HeaderSection, MessageIdAndTlsRequired) {
  auto of = [](std::string_view text) {
    header_section h;
    feed(h, text);
    return h;
  };
  EXPECT_EQ(message_id(of("Subject: x\r\nmessage-id:\r\n <a@b>\r\nMessage-ID: <c@d>\r\n\r\n")), "a@b");
  EXPECT_EQ(message_id(of("Subject: x\r\n\r\nMessage-ID: <body@x>\r\n")), "");
  EXPECT_EQ(message_id(of("")), "");
  EXPECT_EQ(message_id(of("Message-ID: <" + std::string(997, 'i') + ">\r\n\r\n")).size(), 997u);
  EXPECT_EQ(message_id(of("Message-ID: <" + std::string(999, 'i') + ">\r\n\r\n")), "");
  EXPECT_TRUE(tls_required_no(of("TLS-Required: NO\r\n\r\n")));
  EXPECT_TRUE(tls_required_no(of("tls-required:\r\n no \r\n\r\n")));
  EXPECT_FALSE(tls_required_no(of("TLS-Required: No, please\r\n\r\n")));
  EXPECT_FALSE(tls_required_no(of("Subject: x\r\n\r\nTLS-Required: No\r\n")));
}

TEST(MailboxAddresses, CommonForms) {
  using v = std::vector<std::string>;
  EXPECT_EQ(mailbox_addresses("ann@example.org"), v{"ann@example.org"});
  EXPECT_EQ(mailbox_addresses("Ann <ann@example.org>"), v{"ann@example.org"});
  EXPECT_EQ(mailbox_addresses("\"Smith, Ann\" <ann@example.org>"), v{"ann@example.org"});
  EXPECT_EQ(mailbox_addresses("ann@example.org (Ann, the boss)"), v{"ann@example.org"});
  EXPECT_EQ(mailbox_addresses("a@x.example, \"B\" <b@y.example>"), (v{"a@x.example", "b@y.example"}));
  EXPECT_EQ(mailbox_addresses("team: a@x.example, b@y.example;"), (v{"a@x.example", "b@y.example"}));
  EXPECT_EQ(mailbox_addresses("\"odd<name>\"@x.example"), v{"\"odd<name>\"@x.example"});
  EXPECT_EQ(mailbox_addresses("<@relay.example:c@z.example>"), v{"c@z.example"});
  EXPECT_TRUE(mailbox_addresses("undisclosed-recipients:;").empty());
  EXPECT_TRUE(mailbox_addresses("Just A Name").empty());
}

// Found by tests/fuzz/headers_fuzz: cutting a route or a display name off must not leave
// a word without '@' that the submission sender check would then compare as an address.
TEST(MailboxAddresses, NoAtLeftAfterCutsIsNoAddress) {
  EXPECT_TRUE(mailbox_addresses("<a@b.example:c>").empty());
  EXPECT_TRUE(mailbox_addresses("ann@example.org victim").empty());
  EXPECT_TRUE(mailbox_addresses("\n,@\x06\n\xd9").empty());
  EXPECT_EQ(mailbox_addresses("x@y.example victim, b@z.example"), std::vector<std::string>{"b@z.example"});
}

}  // namespace
}  // namespace sr::smtp
