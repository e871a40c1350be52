// report::classify_bounce against a table of real replies of large providers and common MTAs
// (as they appear in bounces), our own give-up reasons, and the status-code-first rule.
#include "sealrelay/report/bounce.hh"

#include <gtest/gtest.h>

namespace sr::report {
namespace {

struct row {
  const char* who;
  const char* reply;
  bounce_class want;
};

// Each reply as the MX sent it (multi-line replies joined as the link records them).
const row provider_replies[] = {
    {"gmail unknown", "550-5.1.1 The email account that you tried to reach does not exist. Please try "
                      "double-checking the recipient's email address for typos or unnecessary spaces.",
     bounce_class::bad_mailbox},
    {"gmail disabled", "550-5.2.1 The email account that you tried to reach is disabled.", bounce_class::bad_mailbox},
    {"gmail quota", "552-5.2.2 The email account that you tried to reach is over quota.", bounce_class::mailbox_full},
    {"gmail spam", "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail.",
     bounce_class::policy},
    {"gmail unauthenticated", "550-5.7.26 This mail has been blocked because the sender is unauthenticated.",
     bounce_class::policy},
    {"outlook.com unavailable", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
     bounce_class::bad_mailbox},
    {"m365 not found", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     bounce_class::bad_mailbox},
    {"m365 edge blocking", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
     bounce_class::bad_mailbox},
    {"m365 quota", "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException",
     bounce_class::mailbox_full},
    {"m365 banned ip", "550 5.7.606 Access denied, banned sending IP [192.0.2.1].", bounce_class::policy},
    {"spamhaus", "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus.",
     bounce_class::policy},
    {"yahoo no account", "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - "
                         "mta1234.mail.bf1.yahoo.com",
     bounce_class::bad_mailbox},
    {"yahoo policy", "554 5.7.9 Message not accepted for policy reasons.", bounce_class::policy},
    {"yahoo mailbox full", "552 1 Requested mail action aborted, mailbox full", bounce_class::mailbox_full},
    {"icloud unknown", "550 5.1.1 <x@icloud.com>: user does not exist", bounce_class::bad_mailbox},
    {"icloud policy", "554 5.7.1 [CS01] Message rejected due to local policy.", bounce_class::policy},
    {"postfix unknown", "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in local recipient table",
     bounce_class::bad_mailbox},
    {"postfix relay", "554 5.7.1 <x@example.com>: Relay access denied", bounce_class::policy},
    {"postfix full", "552 5.2.2 <x@example.com>: Recipient address rejected: Mailbox is full",
     bounce_class::mailbox_full},
    {"postfix sender domain", "550 5.1.8 <s@nowhere.example>: Sender address rejected: Domain not found",
     bounce_class::policy},
    {"mimecast invalid", "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
     bounce_class::bad_mailbox},
    {"no code, no such user", "550 No such user here", bounce_class::bad_mailbox},
    {"starttls first", "530 5.7.0 Must issue a STARTTLS command first", bounce_class::tls},
    {"requiretls", "550 5.7.30 REQUIRETLS support required", bounce_class::tls},
    {"encryption needed", "554 5.7.10 Encryption needed", bounce_class::tls},
    {"unable to route", "554 5.4.4 Unable to route: no mail hosts for domain", bounce_class::dns},
    {"host unknown", "550 5.1.2 Host unknown", bounce_class::dns},
    {"too large", "552 5.3.4 Message size exceeds fixed maximum message size", bounce_class::other},
    {"generic", "554 5.0.0 Service unavailable", bounce_class::other},
    {"generic security", "554 5.7.0 Rejected", bounce_class::policy},
    {"content", "550 5.6.0 Message contains invalid header", bounce_class::other},
};

TEST(BounceClass, ProviderReplies) {
  for (const auto& r : provider_replies) {
    SCOPED_TRACE(r.who);
    bounce_facts f;
    f.reason = reason::remote_5xx;
    f.reply = r.reply;
    f.status = status_of_reply(r.reply);
    EXPECT_EQ(to_string(classify_bounce(f)), to_string(r.want)) << r.reply;
  }
}

TEST(BounceClass, StatusCodeComesBeforeText) {
  // The text says "mailbox unavailable" (bad mailbox) but the code says the mailbox is full.
  bounce_facts f{reason::remote_5xx, "5.2.2", "552 5.2.2 mailbox unavailable: over its limit"};
  EXPECT_EQ(classify_bounce(f), bounce_class::mailbox_full);
  // The link writes "5.0.0" when the MX gave no code: generic, so the text decides.
  bounce_facts g{reason::remote_5xx, "5.0.0", "550 User unknown"};
  EXPECT_EQ(classify_bounce(g), bounce_class::bad_mailbox);
}

TEST(BounceClass, OurOwnReasonsComeFirst) {
  // Null MX: our own bounce carries 5.1.10 too, which from a remote would be a bad mailbox.
  EXPECT_EQ(classify_bounce({reason::null_mx, "5.1.10", ""}), bounce_class::dns);
  EXPECT_EQ(classify_bounce({reason::nxdomain, "5.1.2", ""}), bounce_class::dns);
  EXPECT_EQ(classify_bounce({reason::mx_address_lookup_failed, "", ""}), bounce_class::dns);
  EXPECT_EQ(classify_bounce({reason::tlsa_lookup_failed, "", ""}), bounce_class::dns);
  EXPECT_EQ(classify_bounce({reason::starttls_not_offered, "5.7.10", ""}), bounce_class::tls);
  EXPECT_EQ(classify_bounce({reason::cert_untrusted, "", ""}), bounce_class::tls);
  EXPECT_EQ(classify_bounce({reason::requiretls_not_offered, "5.7.30", ""}), bounce_class::tls);
  EXPECT_EQ(classify_bounce({reason::connect_failed, "", ""}), bounce_class::other);
}

TEST(BounceClass, ExpiryIsClassifiedByTheLastReply) {
  // 4.4.7 is only "too old": the reply of the last attempt says why.
  EXPECT_EQ(classify_bounce({reason::expired, "4.4.7", "452 4.2.2 The recipient's inbox is out of storage space."}),
            bounce_class::mailbox_full);
  EXPECT_EQ(classify_bounce({reason::expired, "4.4.7", ""}), bounce_class::other);
  EXPECT_EQ(classify_bounce({reason::expired, "4.4.7", "421 4.7.0 [192.0.2.1] Try again later, blocked"}),
            bounce_class::policy);
}

TEST(BounceClass, StatusOfReply) {
  EXPECT_EQ(status_of_reply("550-5.1.1 The email account"), "5.1.1");
  EXPECT_EQ(status_of_reply("550 5.7.606 Access denied"), "5.7.606");
  EXPECT_EQ(status_of_reply("550 5.1.1"), "5.1.1");
  EXPECT_EQ(status_of_reply("550 No such user"), "");
  EXPECT_EQ(status_of_reply("550 5.1"), "");
  EXPECT_EQ(status_of_reply("550 5.1.1234 x"), "");
  EXPECT_EQ(status_of_reply("abc 5.1.1 x"), "");
  EXPECT_EQ(status_of_reply(""), "");
}

TEST(BounceClass, Tokens) {
  for (unsigned i = 0; i < bounce_class_count; ++i) {
    auto c = bounce_class(i);
    auto back = bounce_class_from_token(to_string(c));
    ASSERT_TRUE(back.has_value()) << i;
    EXPECT_EQ(*back, c);
  }
  EXPECT_EQ(to_string(bounce_class::bad_mailbox), "bad-mailbox");
  EXPECT_EQ(to_string(bounce_class::mailbox_full), "mailbox-full");
  EXPECT_FALSE(bounce_class_from_token("bad_mailbox").has_value());
}

TEST(BounceClass, LongRepliesAreReadUpToOneKiB) {
  std::string reply = "550 " + std::string(2000, 'x') + " user unknown";
  EXPECT_EQ(classify_bounce({reason::remote_5xx, "", reply}), bounce_class::other);
  reply = "550 " + std::string(900, 'x') + " user unknown";
  EXPECT_EQ(classify_bounce({reason::remote_5xx, "", reply}), bounce_class::bad_mailbox);
}

}  // namespace
}  // namespace sr::report
