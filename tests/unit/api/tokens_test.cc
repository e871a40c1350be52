// Bearer tokens: the file's rules (comments, blank lines, b64token syntax, minimum length,
// permissions) and the Authorization check's outcomes (401 for none or malformed, 403 for
// a well-formed token not in the file).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "sealrelay/api/tokens.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::api {
namespace {

const char* file_text =
    "# tokens for the web shop\n"
    "\n"
    "shop-0123456789abcdef\n"
    "   crm.TOKEN_with~all+chars/ok==   \r\n"
    "\t# indented comment\n";

TEST(Tokens, ParseSkipsCommentsAndBlankLines) {
  auto set = token_set::parse(file_text, "tokens");
  ASSERT_TRUE(set.ok()) << set.err();
  EXPECT_EQ(set->size(), 2u);
}

TEST(Tokens, CheckGivesTheMatchingTokensPositionInTheFile) {
  auto set = token_set::parse(file_text, "tokens");
  ASSERT_TRUE(set.ok());
  std::size_t at = 99;
  EXPECT_EQ(set->check("Bearer crm.TOKEN_with~all+chars/ok==", &at), auth_outcome::ok);
  EXPECT_EQ(at, 1u);
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdef", &at), auth_outcome::ok);
  EXPECT_EQ(at, 0u);
  at = 99;
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdeX", &at), auth_outcome::wrong);
  EXPECT_EQ(at, 99u);  // untouched unless a token matched
}

TEST(Tokens, ParseRefusalsNameTheLine) {
  auto bad = [](std::string_view text) {
    auto r = token_set::parse(text, "t.txt");
    return r.ok() ? std::string("accepted") : r.err();
  };
  EXPECT_EQ(bad("# only comments\n\n"), "t.txt: no token in the file");
  EXPECT_EQ(bad(""), "t.txt: no token in the file");
  EXPECT_EQ(bad("ok-token-0123456789\nshort\n"), "t.txt:2: token shorter than 16 characters");
  EXPECT_NE(bad("two tokens-0123456789 on-one-line-0123456789\n").find("t.txt:1: not a bearer token"),
            std::string::npos);
  EXPECT_NE(bad("x\n#\nbad=inside-0123456789\n").find("t.txt:1:"), std::string::npos);
  EXPECT_NE(bad("ok-token-0123456789\nbad=inside-0123456789\n").find("t.txt:2: not a bearer token"),
            std::string::npos);
  EXPECT_NE(bad("tok\xc3\xa9n-0123456789abcdef\n").find("t.txt:1:"), std::string::npos);
}

TEST(Tokens, CheckOutcomes) {
  auto set = token_set::parse(file_text, "tokens");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdef"), auth_outcome::ok);
  EXPECT_EQ(set->check("bearer   crm.TOKEN_with~all+chars/ok=="), auth_outcome::ok);
  EXPECT_EQ(set->check(std::nullopt), auth_outcome::missing);
  EXPECT_EQ(set->check(""), auth_outcome::malformed);
  EXPECT_EQ(set->check("Bearer"), auth_outcome::malformed);
  EXPECT_EQ(set->check("Bearer "), auth_outcome::malformed);
  EXPECT_EQ(set->check("Basic c2hvcDpwdw=="), auth_outcome::malformed);
  EXPECT_EQ(set->check("Bearer a b"), auth_outcome::malformed);
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdef\r\nX: y"), auth_outcome::malformed);
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdeF"), auth_outcome::wrong);
  EXPECT_EQ(set->check("Bearer shop-0123456789abcde"), auth_outcome::wrong);     // a prefix
  EXPECT_EQ(set->check("Bearer shop-0123456789abcdefX"), auth_outcome::wrong);   // longer
  EXPECT_EQ(set->check("Bearer x"), auth_outcome::wrong);
  EXPECT_EQ(status_for(auth_outcome::missing), 401);
  EXPECT_EQ(status_for(auth_outcome::malformed), 401);
  EXPECT_EQ(status_for(auth_outcome::wrong), 403);
  EXPECT_STREQ(to_string(auth_outcome::wrong), "wrong");
  EXPECT_EQ(auth_error(auth_outcome::missing).status, 401);
  EXPECT_EQ(auth_error(auth_outcome::malformed).status, 401);
  EXPECT_EQ(auth_error(auth_outcome::wrong).status, 403);
  EXPECT_EQ(auth_error(auth_outcome::wrong).field, "Authorization");
}

TEST(Tokens, LoadRefusesAFileOthersMayRead) {
  test::temp_dir dir("sealrelay-api");
  auto path = (dir.path() / "tokens").string();
  test::write_file(path, file_text);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto open = token_set::load(path);
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.err(), path + ": permissions 0644 are too open: a tokens file must be accessible by its "
                        "owner only (chmod 600 " + path + ")");
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  EXPECT_FALSE(token_set::load(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto ok = token_set::load(path);
  ASSERT_TRUE(ok.ok()) << ok.err();
  EXPECT_EQ(ok->check("Bearer shop-0123456789abcdef"), auth_outcome::ok);

  auto missing = token_set::load((dir.path() / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.err().find("cannot open"), std::string::npos);
  EXPECT_FALSE(token_set::load(dir.path().string()).ok());  // a directory

  test::write_file(path, std::string(2u << 20, '#'));  // one comment line over the size cap
  auto huge = token_set::load(path);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.err(), path + ": larger than 1 MiB");
}

}  // namespace
}  // namespace sr::api
